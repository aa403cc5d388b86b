"""An upstream's insane token counts (negative, or past the integer columns) are unknown:
the call is logged and billed with the gateway's estimate, marked so, and no negative or
huge count reaches the client — through OpenAI-compatible and Anthropic deployments,
streamed or not, through a streamed Responses answer, and through embeddings (whose count
may also be missing)."""

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

    prompt: int | None = NEGATIVE  # None: no usage at all (embeddings only)

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

    async def embeddings(self, request: web.Request) -> web.Response:
        body = await request.json()
        items = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = [
            {"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
            for i in range(len(items))
        ]
        answer: dict[str, Any] = {"object": "list", "data": data, "model": body["model"]}
        if self.prompt is not None:
            answer["usage"] = {"prompt_tokens": self.prompt, "total_tokens": self.prompt}
        return web.json_response(answer)

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
    app.router.add_post("/v1/embeddings", fake.embeddings)
    async with _serving(app) as url:
        yield fake, url


@pytest.fixture
async def server(
    database_url: str, upstream: tuple[Upstream, str], monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AppServer]:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test")
    embedder = {"provider": "openai", "base_url": f"{upstream[1]}/v1", "model": "fake-embed"}
    async with serve_app(
        database_url=database_url,
        models=[
            *gpt_and_claude(upstream[1]),
            {"name": "embed-test", "kind": "embeddings", "deployments": [embedder]},
        ],
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


@pytest.mark.parametrize("prompt", [NEGATIVE, HUGE, None], ids=["negative", "huge", "missing"])
async def test_embeddings_without_a_sane_upstream_count_are_estimated(
    server: AppServer, upstream: tuple[Upstream, str], prompt: int | None
) -> None:
    """Counted as an answer's would be, marked estimated; token arrays count as sent."""
    upstream[0].prompt = prompt
    cases: dict[str, tuple[Any, int | None]] = {
        "text": (["Say hi to the embeddings", "and again"], None),
        "tokens": ([[1, 2, 3, 4], [5, 6]], 6),
    }
    for label, (given, exact) in cases.items():
        body = {"model": "embed-test", "input": given, "metadata": {"case": label}}
        answer = orjson.loads(await post(server, "embeddings", body))
        tokens = answer["usage"]["prompt_tokens"]
        assert answer["usage"]["total_tokens"] == tokens
        assert 0 < tokens < 100 if exact is None else tokens == exact, (label, tokens)
        [row] = await records(server, 1, f"metadata.case={label}", key=ADMIN)
        assert row["usage_estimated"] is True, label
        assert row["prompt_tokens"] == tokens, label
