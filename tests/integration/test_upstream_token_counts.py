"""An upstream's insane token counts (negative, or past the integer columns) are unknown:
the call is logged and billed with the gateway's estimate, marked so, and no negative or
huge count reaches the client — through OpenAI-compatible and Anthropic deployments,
streamed or not, and through a streamed Responses answer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from propylon.gateway.usage import MAX_TOKENS
from tests.integration.observe.support import records
from tests.support.servers import AppServer, gpt_and_claude, serve_app
from tests.support.site import _serving

ADMIN = "admin-secret-for-token-count-tests"
NEGATIVE, HUGE = -1_000_000, 2**62


class Upstream:
    """OpenAI chat completions and Anthropic messages answering ``Hi there`` with the
    prompt count ``prompt`` (the tokens of the answer: 3)."""

    prompt = NEGATIVE

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        usage = {"prompt_tokens": self.prompt, "completion_tokens": 3, "total_tokens": 3}
        head = {"id": "c1", "created": 1, "model": body["model"]}
        if not body.get("stream"):
            message = {"role": "assistant", "content": "Hi there"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            answer = {**head, "object": "chat.completion", "choices": [choice], "usage": usage}
            return web.json_response(answer)
        delta = {"index": 0, "delta": {"content": "Hi there"}, "finish_reason": "stop"}
        chunks = [
            {**head, "object": "chat.completion.chunk", "choices": [delta]},
            {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage},
        ]
        lines = [b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]
        return web.Response(body=b"".join(lines), content_type="text/event-stream")

    async def messages(self, request: web.Request) -> web.Response:
        usage = {"input_tokens": self.prompt, "output_tokens": 3}
        answer = {
            "id": "m1",
            "type": "message",
            "role": "assistant",
            "model": "fake-claude",
            "content": [{"type": "text", "text": "Hi there"}],
            "stop_reason": "end_turn",
            "usage": usage,
        }
        return web.json_response(answer)


@pytest.fixture
async def upstream() -> AsyncIterator[tuple[Upstream, str]]:
    fake = Upstream()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", fake.chat)
    app.router.add_post("/v1/messages", fake.messages)
    async with _serving(app) as url:
        yield fake, url


@pytest.fixture
async def server(
    database_url: str, upstream: tuple[Upstream, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AppServer]:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test")
    async with serve_app(
        database_url=database_url,
        models=gpt_and_claude(upstream[1]),
        admin_key=ADMIN,
        observe={"flush_interval_s": 0.05},
        cache={"enabled": False},
    ) as running:
        yield running


async def post(server: AppServer, path: str, body: dict[str, Any]) -> bytes:
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.v1}/{path}", json=body, headers=server.headers) as resp,
    ):
        assert resp.status == 200, await resp.text()
        return await resp.read()


def counts(value: Any) -> list[int]:
    """Every int in ``value`` (a decoded answer or chunk), nested anywhere."""
    if isinstance(value, dict):
        return [n for v in value.values() for n in counts(v)]
    if isinstance(value, list):
        return [n for v in value for n in counts(v)]
    return [value] if isinstance(value, int) and not isinstance(value, bool) else []


def sane(raw: bytes) -> None:
    for line in raw.decode().splitlines():
        text = line.removeprefix("data: ")
        if text.startswith("{"):
            assert all(0 <= n <= MAX_TOKENS for n in counts(orjson.loads(text))), text


@pytest.mark.parametrize("prompt", [NEGATIVE, HUGE], ids=["negative", "huge"])
async def test_insane_upstream_counts_are_logged_as_an_estimate_and_never_reach_the_client(
    server: AppServer, upstream: tuple[Upstream, str], prompt: int
) -> None:
    upstream[0].prompt = prompt
    ask = {"messages": [{"role": "user", "content": "Say hi"}], "max_tokens": 20}
    cases: dict[str, tuple[str, dict[str, Any]]] = {
        "plain": ("chat/completions", {"model": "gpt-test"}),
        "streamed": (
            "chat/completions",
            {"model": "gpt-test", "stream": True, "stream_options": {"include_usage": True}},
        ),
        "claude": ("chat/completions", {"model": "claude-test"}),
    }
    for label, (path, fields) in cases.items():
        sane(await post(server, path, {**ask, **fields, "metadata": {"case": label}}))
    responses = {"model": "gpt-test", "input": "Say hi", "stream": True}
    sane(await post(server, "responses", {**responses, "metadata": {"case": "responses"}}))
    for label in (*cases, "responses"):
        [row] = await records(server, 1, f"metadata.case={label}", key=ADMIN)
        assert row["usage_estimated"] is True, label
        assert 0 < row["prompt_tokens"] < 1000, (label, row["prompt_tokens"])
        assert row["completion_tokens"] > 0, label
