"""Each timeout bounds one thing: connect, the first token and the gaps of a stream, the whole
answer of a non-streamed call; a timeout after the upstream may have done the work is not
retried (``retry.timeouts``). Times are scaled down: 100 ms here stands for 10 s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from propylon.testing import Behaviour, FakeUpstream
from tests.support.servers import AppServer, serve_app

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-slow", "messages": [{"role": "user", "content": "think hard"}]}


@asynccontextmanager
async def gateway(
    database_url: str, upstream: FakeUpstream, retry: dict[str, Any] | None = None
) -> AsyncIterator[AppServer]:
    deployment = {
        "provider": "openai",
        "base_url": f"{upstream.base_url}/v1",
        "first_token_timeout": 0.1,  # "10 s"
        "idle_timeout": 0.2,  # "20 s"
        "response_timeout": 1.5,  # "150 s"
    }
    async with serve_app(
        database_url=database_url,
        models=[{"name": "gpt-slow", "deployments": [deployment]}],
        retry={"attempts": 2, "base_delay_s": 0.01, **(retry or {})},
    ) as server:
        yield server


async def post(server: AppServer, **fields: Any) -> tuple[int, bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.v1}/chat/completions", json={**BODY, **fields}, headers=server.headers
        ) as resp,
    ):
        return resp.status, await resp.read()


async def test_a_non_streamed_answer_slower_than_the_first_token_timeout_succeeds_once(
    database_url: str, upstream: FakeUpstream
) -> None:
    # A reasoning model answering after "40 s": the first-token bound is for streams only.
    upstream.set_behaviour(Behaviour(latency_ms=400))
    async with gateway(database_url, upstream) as server:
        status, body = await post(server)
    assert status == 200, body
    assert upstream.calls[CHAT] == 1


async def test_a_non_streamed_answer_past_the_response_timeout_is_a_504_not_retried(
    database_url: str, upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(Behaviour(latency_ms=60_000))
    async with gateway(database_url, upstream) as server:
        status, body = await post(server)
    assert status == 504
    assert b"upstream_timeout" in body and b"1.5 s response timeout" in body
    assert upstream.calls[CHAT] == 1, "the upstream may have done (and billed) the work"


async def test_timeouts_after_sending_are_retried_when_configured(
    database_url: str, upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(Behaviour(latency_ms=60_000))
    async with gateway(database_url, upstream, retry={"timeouts": "retry"}) as server:
        status, _ = await post(server)
    assert status == 504
    assert upstream.calls[CHAT] == 2


async def test_a_stream_without_a_first_token_in_time_is_a_504_not_retried(
    database_url: str, upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(Behaviour(ttft_ms=60_000))
    async with gateway(database_url, upstream) as server:
        status, body = await post(server, stream=True)
    assert status == 504
    assert b"first-token timeout" in body
    assert upstream.calls[CHAT] == 1


async def test_a_stream_silent_for_longer_than_the_idle_timeout_ends_with_an_error(
    database_url: str, upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(Behaviour(tokens_per_second=0.01))  # "one token per 100 min"
    async with gateway(database_url, upstream) as server:
        status, body = await post(server, stream=True)
    assert status == 200, "the stream had started"
    assert b"idle timeout" in body
    assert not body.endswith(b"data: [DONE]\n\n")
    assert upstream.calls[CHAT] == 1
