"""The Anthropic adapter against the fake upstream's ``/v1/messages``, over loopback HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from propylon.errors import (
    UpstreamConnectionError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamRejected,
    UpstreamStreamInterrupted,
    UpstreamTimeout,
)
from propylon.gateway.protocol import ChatModel, ChatStream, JSONObject
from propylon.gateway.providers.anthropic import AnthropicProvider
from propylon.settings import DeploymentConfig
from propylon.testing import Behaviour, FakeUpstream, Fault
from propylon.testing.server import RecordedRequest

UPSTREAM_MODEL = "fake-claude"
KEY_ENV = "PROPYLON_TEST_ANTHROPIC_KEY"
KEY = "sk-ant-test"
PROMPT = "Tell me about the weather in Oslo"
SYSTEM = "Be brief."
WEATHER_TOOL: JSONObject = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
            "required": ["city", "days"],
        },
    },
}
FORCE_WEATHER: JSONObject = {"type": "function", "function": {"name": "weather"}}


def chat(**fields: object) -> JSONObject:
    return {
        "model": "public-claude",
        "messages": [{"role": "user", "content": PROMPT}],
        **fields,
    }


def deployment(
    base_url: str, *, first_token_timeout: float = 5.0, response_timeout: float = 600.0
) -> DeploymentConfig:
    return DeploymentConfig(
        provider="anthropic",
        base_url=base_url,
        model=UPSTREAM_MODEL,
        api_key_env=KEY_ENV,
        first_token_timeout=first_token_timeout,
        response_timeout=response_timeout,
    )


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as http:
        yield http


@pytest.fixture
def provider(
    upstream: FakeUpstream, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> AnthropicProvider:
    monkeypatch.setenv(KEY_ENV, KEY)
    upstream.set_behaviour(Behaviour(require_api_key=KEY))
    return AnthropicProvider(deployment(upstream.base_url), session)


def sent(upstream: FakeUpstream) -> RecordedRequest:
    request = upstream.last_request("/v1/messages")
    assert request is not None, "nothing reached /v1/messages"
    return request


def strike(upstream: FakeUpstream, fault: Fault) -> None:
    upstream.set_behaviour(Behaviour(require_api_key=KEY, faults=(fault,)))


async def drain(stream: ChatStream, into: list[JSONObject] | None = None) -> list[JSONObject]:
    """Every chunk of ``stream``, also appended to ``into`` as it arrives; closes the stream."""
    chunks = [] if into is None else into
    try:
        async for chunk in stream:
            chunks.append(chunk)
    finally:
        await stream.aclose()
    return chunks


def text_of(chunks: list[JSONObject]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


# --- answers ------------------------------------------------------------------------------


async def test_complete_translates_the_request_and_the_answer(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    assert isinstance(provider, ChatModel)
    reply = await provider.complete(
        chat(messages=[{"role": "system", "content": SYSTEM}, *chat()["messages"]])
    )
    ChatCompletion.model_validate(reply)
    assert reply["id"].startswith("chatcmpl-msg_")
    assert reply["model"] == UPSTREAM_MODEL
    choice = reply["choices"][0]
    assert choice["message"]["content"].startswith("Echo: Tell me about the weather")
    assert choice["finish_reason"] == "stop"
    usage = reply["usage"]
    assert usage["completion_tokens"] == Behaviour().completion_tokens
    assert usage["prompt_tokens"] == len(SYSTEM.split()) + len(PROMPT.split())
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]

    request = sent(upstream)
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.body["model"] == UPSTREAM_MODEL
    assert request.body["system"] == SYSTEM
    assert [m["role"] for m in request.body["messages"]] == ["user"]
    assert request.body["max_tokens"] == 4096, "Anthropic requires max_tokens: a default is sent"
    assert "stream" not in request.body


async def test_max_tokens_reaches_upstream_and_a_cut_answer_finishes_with_length(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    reply = await provider.complete(chat(max_completion_tokens=3))
    assert sent(upstream).body["max_tokens"] == 3
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["completion_tokens"] == 3


async def test_base_url_may_end_with_v1(
    upstream: FakeUpstream, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    provider = AnthropicProvider(deployment(f"{upstream.base_url}/v1/"), session)
    reply = await provider.complete(chat())
    assert reply["choices"][0]["message"]["content"]


async def test_stream_yields_role_content_finish_and_usage_chunks(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    expected = await provider.complete(chat())
    stream = await provider.stream(chat(stream=True, stream_options={"include_usage": True}))
    chunks = await drain(stream)

    assert sent(upstream).body["stream"] is True
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert text_of(chunks) == expected["choices"][0]["message"]["content"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == expected["usage"]
    assert {c["id"] for c in chunks} == {chunks[0]["id"]}
    assert chunks[0]["id"].startswith("chatcmpl-msg_")


async def test_stream_without_include_usage_sends_no_usage_chunk(
    provider: AnthropicProvider,
) -> None:
    chunks = await drain(await provider.stream(chat(stream=True)))
    assert all(c["choices"] for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


async def test_forced_tool_call_round_trips_through_tool_use_and_tool_result(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    reply = await provider.complete(chat(tools=[WEATHER_TOOL], tool_choice=FORCE_WEATHER))
    assert sent(upstream).body["tool_choice"] == {"type": "tool", "name": "weather"}
    assert sent(upstream).body["tools"][0]["input_schema"] == WEATHER_TOOL["function"]["parameters"]
    message = reply["choices"][0]["message"]
    assert reply["choices"][0]["finish_reason"] == "tool_calls"
    [call] = message["tool_calls"]
    assert call["type"] == "function"
    assert call["function"]["name"] == "weather"
    arguments = orjson.loads(call["function"]["arguments"])
    assert set(arguments) == {"city", "days"}

    follow_up = chat(
        messages=[
            *chat()["messages"],
            message,
            {"role": "tool", "tool_call_id": call["id"], "content": "Sunny, 21 C"},
        ],
        tools=[WEATHER_TOOL],
    )
    answer = await provider.complete(follow_up)
    assert answer["choices"][0]["message"]["content"].startswith("Echo: Sunny, 21 C")
    turns = sent(upstream).body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assert turns[1]["content"] == [
        {"type": "tool_use", "id": call["id"], "name": "weather", "input": arguments}
    ]
    assert turns[2]["content"] == [
        {"type": "tool_result", "tool_use_id": call["id"], "content": "Sunny, 21 C"}
    ]


async def test_streamed_tool_call_assembles_to_the_same_arguments(
    provider: AnthropicProvider,
) -> None:
    request = chat(tools=[WEATHER_TOOL], tool_choice="required")
    expected = (await provider.complete(request))["choices"][0]["message"]["tool_calls"][0]
    chunks = await drain(await provider.stream({**request, "stream": True}))
    calls = [c for ch in chunks for c in ch["choices"][0]["delta"].get("tool_calls", [])]
    assert {c["index"] for c in calls} == {0}
    assert calls[0]["function"]["name"] == "weather"
    assert calls[0]["id"].startswith("toolu_")
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert orjson.loads(arguments) == orjson.loads(expected["function"]["arguments"])
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"


async def test_closing_a_stream_early_releases_it(provider: AnthropicProvider) -> None:
    stream = await provider.stream(chat(stream=True))
    async for chunk in stream:
        assert chunk["choices"][0]["delta"]["role"] == "assistant"
        break
    await stream.aclose()
    reply = await provider.complete(chat())
    assert reply["choices"][0]["message"]["content"]


# --- errors -------------------------------------------------------------------------------


async def test_429_is_rate_limited_with_retry_after(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    strike(upstream, Fault(kind="rate_limit", retry_after_s=7))
    with pytest.raises(UpstreamRateLimited) as caught:
        await provider.complete(chat())
    assert caught.value.retryable
    assert caught.value.retry_after == 7
    assert "Rate limit exceeded" in caught.value.message
    assert caught.value.code == "rate_limit_error"


async def test_429_on_a_stream_is_raised_before_any_chunk(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    strike(upstream, Fault(kind="rate_limit", retry_after_s=3))
    with pytest.raises(UpstreamRateLimited) as caught:
        await provider.stream(chat(stream=True))
    assert caught.value.retry_after == 3


@pytest.mark.parametrize(("status", "message"), [(529, "Overloaded"), (500, "Internal")])
async def test_overloaded_and_server_errors_are_retryable(
    provider: AnthropicProvider, upstream: FakeUpstream, status: int, message: str
) -> None:
    strike(upstream, Fault(kind="status", status=status))
    with pytest.raises(UpstreamError) as caught:
        await provider.complete(chat())
    assert not isinstance(caught.value, UpstreamRejected)
    assert caught.value.retryable
    assert caught.value.upstream_status == status
    assert message in caught.value.message


async def test_400_is_rejected_with_anthropics_message(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    strike(upstream, Fault(kind="status", status=400, message="prompt is too long: 300000 tokens"))
    with pytest.raises(UpstreamRejected) as caught:
        await provider.stream(chat(stream=True))
    assert not caught.value.retryable
    assert caught.value.http_status == 400
    assert "prompt is too long: 300000 tokens" in caught.value.message
    assert caught.value.code == "invalid_request_error"


async def test_a_wrong_api_key_is_rejected_not_retried(
    upstream: FakeUpstream, session: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-ant-wrong")
    upstream.set_behaviour(Behaviour(require_api_key=KEY))
    provider = AnthropicProvider(deployment(upstream.base_url), session)
    with pytest.raises(UpstreamRejected) as caught:
        await provider.complete(chat())
    assert caught.value.http_status == 401
    assert "invalid x-api-key" in caught.value.message


async def test_no_answer_in_time_is_an_upstream_timeout(
    upstream: FakeUpstream, session: aiohttp.ClientSession
) -> None:
    upstream.set_behaviour(Behaviour(latency_ms=60_000))
    provider = AnthropicProvider(deployment(upstream.base_url, response_timeout=0.1), session)
    with pytest.raises(UpstreamTimeout) as caught:
        await provider.complete(chat())
    assert "0.1 s response timeout" in caught.value.message
    streaming = AnthropicProvider(deployment(upstream.base_url, first_token_timeout=0.1), session)
    with pytest.raises(UpstreamTimeout) as caught:
        await streaming.stream(chat(stream=True))
    assert "0.1 s first-token timeout" in caught.value.message


async def test_a_stream_cut_midway_is_interrupted_after_the_chunks_sent(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    strike(upstream, Fault(kind="stream_cut", after_chunks=5))
    stream = await provider.stream(chat(stream=True))
    seen: list[JSONObject] = []
    with pytest.raises(UpstreamStreamInterrupted) as caught:
        await drain(stream, seen)
    assert not caught.value.retryable
    assert text_of(seen).startswith("Echo:")


async def test_an_error_event_midway_interrupts_the_stream_with_its_message(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    strike(upstream, Fault(kind="stream_error", status=529, after_chunks=5))
    stream = await provider.stream(chat(stream=True))
    with pytest.raises(UpstreamStreamInterrupted, match="Overloaded"):
        await drain(stream)


async def test_an_error_event_before_the_first_chunk_can_still_be_retried(
    provider: AnthropicProvider, upstream: FakeUpstream
) -> None:
    strike(upstream, Fault(kind="stream_error", status=529, after_chunks=0))
    with pytest.raises(UpstreamConnectionError, match="Overloaded") as caught:
        await provider.stream(chat(stream=True))
    assert caught.value.retryable
