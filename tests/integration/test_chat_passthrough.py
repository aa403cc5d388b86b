"""The OpenAI-compatible pass-through, over real HTTP on loopback, with the official SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from propylon.testing import Behaviour, FakeUpstream, Fault
from tests.support.servers import AppServer

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "Say something deterministic"}
]


@asynccontextmanager
async def client(gateway: AppServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=gateway.v1, api_key=gateway.api_key, max_retries=0
    ) as sdk:
        yield sdk


@pytest.fixture
async def sdk(gateway: AppServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with client(gateway) as sdk:
        yield sdk


async def test_sdk_gets_a_completion_relayed_from_upstream(
    gateway: AppServer, upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    reply = await sdk.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
    )
    assert reply.choices[0].message.content
    assert reply.usage is not None and reply.usage.completion_tokens > 0
    sent = upstream.last_request("/v1/chat/completions")
    assert sent is not None
    assert sent.body["model"] == "fake-gpt", "the upstream model name replaces the public one"


async def test_sdk_streams_a_completion_relayed_from_upstream(
    gateway: AppServer, sdk: openai.AsyncOpenAI
) -> None:
    stream = await sdk.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    usage = None
    async for chunk in stream:
        if chunk.choices:
            pieces.append(chunk.choices[0].delta.content or "")
        if chunk.usage:
            usage = chunk.usage
    assert "".join(pieces)
    assert usage is not None and usage.total_tokens > 0


async def test_streamed_and_plain_answers_agree(
    gateway: AppServer, sdk: openai.AsyncOpenAI
) -> None:
    plain = await sdk.chat.completions.create(model="gpt-test", messages=MESSAGES)
    stream = await sdk.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        stream=True,
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == plain.choices[0].message.content


async def test_an_alias_reaches_the_same_model(gateway: AppServer, sdk: openai.AsyncOpenAI) -> None:
    reply = await sdk.chat.completions.create(
        model="gpt-alias",
        messages=MESSAGES,
    )
    assert reply.choices[0].message.content


async def test_a_slow_stream_is_relayed_chunk_by_chunk(
    gateway: AppServer, upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.set_behaviour(Behaviour(completion_tokens=20, tokens_per_second=20))  # ~1 s
    stream = await sdk.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        stream=True,
    )
    started = time.monotonic()
    arrivals: list[float] = []
    async for _chunk in stream:
        arrivals.append(time.monotonic() - started)
    assert len(arrivals) >= 10
    # Not buffered: the first chunk arrived long before the upstream finished.
    assert arrivals[0] < arrivals[-1] / 2


async def test_models_lists_configured_models(gateway: AppServer, sdk: openai.AsyncOpenAI) -> None:
    models = await sdk.models.list()
    assert {m.id for m in models.data} == {"gpt-test", "embed-test"}


async def test_one_model_is_retrieved_by_name_or_alias(
    gateway: AppServer, sdk: openai.AsyncOpenAI
) -> None:
    model = await sdk.models.retrieve("gpt-alias")
    assert (model.id, model.object, model.owned_by) == ("gpt-test", "model", "propylon")
    assert (await sdk.models.retrieve("embed-test")).model_extra == {"kind": "embeddings"}
    with pytest.raises(openai.NotFoundError) as caught:
        await sdk.models.retrieve("gpt-nope")
    assert caught.value.code == "model_not_found"
    assert "Configured models: gpt-test, embed-test" in caught.value.message


async def test_embeddings_are_relayed_in_float_and_base64(
    gateway: AppServer, sdk: openai.AsyncOpenAI
) -> None:
    floats = await sdk.embeddings.create(
        model="embed-test", input=["one", "two"], encoding_format="float"
    )
    packed = await sdk.embeddings.create(model="embed-test", input=["one", "two"])  # base64
    assert len(floats.data) == 2
    assert floats.data[1].embedding == pytest.approx(packed.data[1].embedding, rel=1e-6)


# -- errors: OpenAI-shaped, right status, never a 500 -------------------------------------


async def post(gateway: AppServer, body: bytes | str) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{gateway.v1}/chat/completions",
            data=body,
            headers={"Content-Type": "application/json", **gateway.headers},
        ) as resp,
    ):
        return resp.status, await resp.json()


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ("{not json", 400, "invalid_json", None),
        ("", 400, "invalid_json", None),
        ("[1, 2]", 400, "invalid_json", None),
        ('{"model": "gpt-test"}', 400, "invalid_request", "messages"),
        (
            '{"model": "gpt-test", "messages": [{"role": "user"}]}',
            400,
            "invalid_request",
            "messages[0].content",
        ),
        (
            '{"model": "nope", "messages": [{"role": "user", "content": "hi"}]}',
            404,
            "model_not_found",
            "model",
        ),
        (
            '{"model": "embed-test", "messages": [{"role": "user", "content": "hi"}]}',
            404,
            "model_not_found",
            "model",
        ),
    ],
)
async def test_bad_requests_get_a_clear_openai_error(
    gateway: AppServer, body: str, status: int, code: str, param: str | None
) -> None:
    got_status, got = await post(gateway, body)
    assert got_status == status
    error = got["error"]
    assert isinstance(error, dict)
    assert error["code"] == code
    assert error["param"] == param
    assert error["message"]
    assert set(error) == {"message", "type", "param", "code"}


async def test_a_body_over_the_limit_is_refused_with_413(
    database_url: str, upstream: FakeUpstream
) -> None:
    from tests.support.servers import serve_app

    async with serve_app(database_url=database_url, max_body_bytes=1000) as small:
        status, body = await post(small, '{"model": "x", "messages": "' + "a" * 2000 + '"}')
    assert status == 413
    assert body["error"]["code"] == "request_too_large"  # type: ignore[index]


@pytest.mark.parametrize(
    ("fault", "status", "error_class"),
    [
        (Fault(kind="status", status=400, message="bad thing"), 400, openai.BadRequestError),
        (Fault(kind="status", status=401), 401, openai.AuthenticationError),
        (Fault(kind="status", status=404), 404, openai.NotFoundError),
        (Fault(kind="status", status=500), 502, openai.InternalServerError),
        (Fault(kind="rate_limit", retry_after_s=7), 429, openai.RateLimitError),
        (Fault(kind="reset"), 502, openai.InternalServerError),
    ],
)
async def test_upstream_errors_come_back_openai_shaped(
    gateway: AppServer,
    upstream: FakeUpstream,
    fault: Fault,
    status: int,
    error_class: type[openai.APIStatusError],
    sdk: openai.AsyncOpenAI,
) -> None:
    upstream.set_behaviour(Behaviour(faults=(fault,)))
    with pytest.raises(error_class) as caught:
        await sdk.chat.completions.create(
            model="gpt-test",
            messages=MESSAGES,
        )
    assert caught.value.status_code == status
    body = caught.value.body
    assert isinstance(body, dict) and {"message", "type", "code"} <= set(body)
    if fault.kind == "rate_limit":
        assert caught.value.response.headers["retry-after"] == "7"
    if fault.message:
        assert fault.message in str(body["message"])


async def test_upstream_timeout_is_a_504(database_url: str, upstream: FakeUpstream) -> None:
    from tests.support.servers import serve_app

    upstream.set_behaviour(Behaviour(faults=(Fault(kind="timeout", hang_s=30),)))
    models = [
        {
            "name": "gpt-test",
            "deployments": [
                {
                    "provider": "openai",
                    "base_url": f"{upstream.base_url}/v1",
                    "response_timeout": 0.3,
                }
            ],
        }
    ]
    async with serve_app(database_url=database_url, models=models) as server, client(server) as sdk:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk.chat.completions.create(
                model="gpt-test",
                messages=MESSAGES,
            )
    assert caught.value.status_code == 504


async def test_a_stream_cut_midway_ends_with_an_error_not_a_clean_finish(
    gateway: AppServer, upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.set_behaviour(
        Behaviour(completion_tokens=30, faults=(Fault(kind="stream_cut", after_chunks=3),))
    )
    stream = await sdk.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        stream=True,
    )
    received: list[object] = []

    async def drain() -> None:
        async for chunk in stream:
            received.append(chunk)

    with pytest.raises(openai.APIError, match=r"before it finished|middle of a stream"):
        await drain()
    assert received, "chunks before the cut reach the client"


async def test_an_upstream_error_before_the_first_chunk_gets_a_status_not_a_stream(
    gateway: AppServer, upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.set_behaviour(Behaviour(faults=(Fault(kind="status", status=400),)))
    with pytest.raises(openai.BadRequestError):
        await sdk.chat.completions.create(
            model="gpt-test",
            messages=MESSAGES,
            stream=True,
        )


async def test_client_disconnect_midstream_releases_the_upstream(
    gateway: AppServer, upstream: FakeUpstream, sdk: openai.AsyncOpenAI
) -> None:
    upstream.set_behaviour(Behaviour(completion_tokens=200, tokens_per_second=100))
    stream = await sdk.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        stream=True,
    )
    async for _chunk in stream:
        break
    await stream.close()
    # The gateway hung up on the upstream in turn (its answer was 2 s of tokens away).
    await asyncio.wait_for(upstream.wait_client_left("/v1/chat/completions"), 10)
    # The gateway still serves normally afterwards.
    upstream.set_behaviour(Behaviour())
    reply = await sdk.chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
    )
    assert reply.choices[0].message.content
