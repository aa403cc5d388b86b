"""An OpenAI-compatible upstream answering 200 with a body of the wrong shape is its failure:
a 502 `upstream_error` (in each API's own shape) with a request-log row, or a stream ending
with its error event, never a 500 or a success with nothing in it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from propylon.testing import FakeUpstream
from tests.integration.observe.support import call, records, serve
from tests.support.servers import AppServer


class MisbehavingUpstream:
    """Answers each path with the raw body set for it (``bodies[path]``), status 200."""

    def __init__(self) -> None:
        self.url = ""
        self.bodies: dict[str, bytes] = {}

    async def answer(self, request: web.Request) -> web.Response:
        stream = request.path.endswith("/completions") and (await request.json()).get("stream")
        key = f"{request.path}#stream" if stream else request.path
        content_type = "text/event-stream" if stream else "application/json"
        return web.Response(body=self.bodies[key], content_type=content_type)


@pytest.fixture
async def misbehaving() -> AsyncIterator[MisbehavingUpstream]:
    upstream = MisbehavingUpstream()
    app = web.Application()
    app.router.add_post("/v1/{tail:.*}", upstream.answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    upstream.url = f"http://127.0.0.1:{port}/v1"
    try:
        yield upstream
    finally:
        await runner.cleanup()


@pytest.fixture
async def server(
    database_url: str, upstream: FakeUpstream, misbehaving: MisbehavingUpstream
) -> AsyncIterator[AppServer]:
    deployment = {"provider": "openai", "base_url": misbehaving.url, "model": "odd"}
    models = [
        {"name": "gpt-test", "deployments": [deployment]},
        {"name": "embed-test", "kind": "embeddings", "deployments": [deployment]},
    ]
    async with serve(database_url, upstream, models=models, retry={"attempts": 1}) as running:
        yield running


CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
MESSAGES = {**CHAT, "max_tokens": 16}


async def test_choices_as_an_object_is_a_502_in_each_api_shape_and_is_logged(
    server: AppServer, misbehaving: MisbehavingUpstream
) -> None:
    misbehaving.bodies["/v1/chat/completions"] = b'{"id": "x", "choices": {"0": {}}}'

    chat = await call(server, "POST", "/v1/chat/completions", json=CHAT)
    assert chat.status == 502, chat.body
    assert chat.body["error"]["type"] == "upstream_error"
    assert "not a chat completion" in chat.body["error"]["message"]

    messages = await call(server, "POST", "/v1/messages", json=MESSAGES)
    assert messages.status == 502, messages.body
    assert messages.body["type"] == "error"  # Anthropic's shape, not OpenAI's
    assert "not a chat completion" in messages.body["error"]["message"]

    logged = await records(server, 2)
    assert sorted(row["status"] for row in logged) == [502, 502], logged


@pytest.mark.parametrize(
    "message",
    ["a string", {"content": 123}, {"content": "x", "tool_calls": [{"function": "f"}]}],
)
async def test_a_message_of_the_wrong_shape_is_a_502(
    server: AppServer, misbehaving: MisbehavingUpstream, message: Any
) -> None:
    body = {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    misbehaving.bodies["/v1/chat/completions"] = orjson.dumps(body)
    reply = await call(server, "POST", "/v1/chat/completions", json=CHAT)
    assert reply.status == 502, reply.body
    assert reply.body["error"]["type"] == "upstream_error"


async def test_a_message_whose_content_is_a_list_of_parts_is_served(
    server: AppServer, misbehaving: MisbehavingUpstream
) -> None:
    """Some OpenAI-compatible servers answer with content parts: not a wrong shape."""
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]
    message = {"role": "assistant", "content": parts}
    body = {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
    misbehaving.bodies["/v1/chat/completions"] = orjson.dumps(body)
    reply = await call(server, "POST", "/v1/chat/completions", json=CHAT)
    assert reply.status == 200, reply.body
    assert reply.body["choices"][0]["message"]["content"] == parts


async def test_an_error_answered_with_200_is_a_502_naming_the_upstream_message(
    server: AppServer, misbehaving: MisbehavingUpstream
) -> None:
    error = {"error": {"message": "model overloaded, try later", "type": "server_error"}}
    misbehaving.bodies["/v1/chat/completions"] = orjson.dumps(error)
    reply = await call(server, "POST", "/v1/chat/completions", json=CHAT)
    assert reply.status == 502, reply.body
    assert "model overloaded, try later" in reply.body["error"]["message"]

    misbehaving.bodies["/v1/chat/completions"] = b'{"choices": []}'
    empty = await call(server, "POST", "/v1/chat/completions", json=CHAT)
    assert empty.status == 502, empty.body


@pytest.mark.parametrize(
    "bad",
    [
        b'{"choices": "x"}',
        b'{"choices": [{"index": 0, "delta": "x"}]}',
        b'{"choices": [{"index": 0, "delta": {"content": 123}}]}',
        b'{"choices": [{"index": 0, "delta": {"tool_calls": "x"}}]}',
        b'{"error": "boom"}',
    ],
)
async def test_a_malformed_stream_chunk_ends_the_stream_with_an_error_event(
    server: AppServer, misbehaving: MisbehavingUpstream, bad: bytes
) -> None:
    good = b'{"id": "c", "choices": [{"index": 0, "delta": {"content": "Hel"}}]}'
    misbehaving.bodies["/v1/chat/completions#stream"] = (
        b"data: " + good + b"\n\ndata: " + bad + b"\n\ndata: [DONE]\n\n"
    )
    events = await broken_stream(server, "chat/completions", {**CHAT, "stream": True})
    assert orjson.loads(events[0][5:])["choices"][0]["delta"]["content"] == "Hel"


async def broken_stream(server: AppServer, path: str, body: dict[str, Any]) -> list[bytes]:
    """The ``data:`` events of a stream that must start with 200 and end with an error event
    instead of [DONE]."""
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.v1}/{path}", json=body, headers=server.headers) as resp,
    ):
        assert resp.status == 200
        events = [line async for line in resp.content if line.startswith(b"data:")]
    assert "error" in orjson.loads(events[-1][5:]), events
    assert b"[DONE]" not in b"".join(events)
    return events


@pytest.mark.parametrize("usage", [{"prompt_tokens": None}, "lots", [1], 1e300])
async def test_embeddings_with_odd_usage_are_served_with_an_estimated_count(
    server: AppServer, misbehaving: MisbehavingUpstream, usage: Any
) -> None:
    body = {"data": [{"index": 0, "embedding": [0.1, 0.2]}], "model": "odd", "usage": usage}
    misbehaving.bodies["/v1/embeddings"] = orjson.dumps(body)
    reply = await call(
        server, "POST", "/v1/embeddings", json={"model": "embed-test", "input": "hello"}
    )
    assert reply.status == 200, reply.body
    assert reply.body["usage"]["prompt_tokens"] == 1  # "hello", counted by the gateway


@pytest.mark.parametrize("text", [[1, 2], 5, {"t": "x"}], ids=["list", "number", "object"])
async def test_a_legacy_completion_whose_text_is_not_text_is_a_502_or_an_error_event(
    server: AppServer, misbehaving: MisbehavingUpstream, text: Any
) -> None:
    """Whole: 502 naming the upstream. Streamed: the stream ends with an error event (after
    the chunk that was good), without [DONE]."""
    choice = {"index": 0, "text": text, "finish_reason": "stop"}
    misbehaving.bodies["/v1/completions"] = orjson.dumps({"id": "t", "choices": [choice]})
    legacy = {"model": "gpt-test", "prompt": "hi", "max_tokens": 5}
    whole = await call(server, "POST", "/v1/completions", json=legacy)
    assert whole.status == 502, whole.body
    assert "text is not a string" in whole.body["error"]["message"]
    good = {"id": "t", "choices": [{"index": 0, "text": "Hel", "finish_reason": None}]}
    misbehaving.bodies["/v1/completions#stream"] = (
        b"".join(
            b"data: " + orjson.dumps(chunk) + b"\n\n"
            for chunk in (good, {"id": "t", "choices": [choice]})
        )
        + b"data: [DONE]\n\n"
    )
    events = await broken_stream(server, "completions", {**legacy, "stream": True})
    assert orjson.loads(events[0][5:])["choices"][0]["text"] == "Hel"
