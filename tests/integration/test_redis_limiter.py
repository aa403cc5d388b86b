"""The Redis limiter: one atomic script shared by many clients, and both ways to fail."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from propylon.access.limits import Charge
from propylon.access.redis_limiter import RedisRateLimiter
from propylon.errors import ServiceUnavailable
from propylon.testing import FakeUpstream
from tests.support.processes import free_port
from tests.support.servers import AppServer, serve_app

REDIS = "redis://127.0.0.1:6379/0"


@pytest.fixture
def prefix() -> str:
    return f"test:{uuid.uuid4().hex}:"


@pytest.fixture
async def limiter(prefix: str) -> AsyncIterator[RedisRateLimiter]:
    limiter = RedisRateLimiter(REDIS, prefix=prefix)
    yield limiter
    await limiter.close()


def rpm(limit: int) -> Charge:
    return Charge("k:rpm", "requests", limit, 1)


def tpm(limit: int, cost: int) -> Charge:
    return Charge("k:tpm", "tokens", limit, cost)


async def test_many_clients_hammering_one_bucket_admit_exactly_the_limit(prefix: str) -> None:
    # Fail closed with a generous timeout: a slow test machine must not be mistaken for an
    # outage and admit everything (that is fail-open's job, tested below).
    clients = [
        RedisRateLimiter(REDIS, prefix=prefix, fail_open=False, timeout_s=10) for _ in range(8)
    ]
    try:
        decisions = await asyncio.gather(
            *(clients[i % 8].acquire([rpm(25), tpm(100_000, 10)]) for i in range(200))
        )
    finally:
        for client in clients:
            await client.close()
    assert sum(c.failures for c in clients) == 0
    assert sum(d.allowed for d in decisions) == 25
    refused = [d for d in decisions if not d.allowed]
    assert all(0 < d.retry_after_s <= 60 / 25 + 0.5 for d in refused)


async def test_acquire_is_all_or_nothing_and_settles_both_ways(
    limiter: RedisRateLimiter,
) -> None:
    assert (await limiter.acquire([rpm(100), tpm(1000, 900)])).allowed
    refused = await limiter.acquire([rpm(100), tpm(1000, 200)])
    assert not refused.allowed
    assert [s.remaining for s in refused.states] == [99, 100]
    given_back = await limiter.adjust([tpm(1000, -800)])
    assert given_back.states[0].remaining == 900
    taken = await limiter.adjust([tpm(1000, 1500)])  # into debt
    assert taken.states[0].remaining == 0
    late = await limiter.acquire([rpm(100), tpm(1000, 1)])
    assert not late.allowed
    assert late.retry_after_s > 20


async def test_redis_down_fails_open_with_a_warning_and_a_count(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", prefix=prefix)
    started = time.perf_counter()
    try:
        decisions = [await limiter.acquire([rpm(1)]) for _ in range(3)]
    finally:
        await limiter.close()
    assert time.perf_counter() - started < 10.0  # refused at once; hung would be worse
    assert all(d.allowed for d in decisions)
    assert limiter.failures == 3
    assert [r.message for r in caplog.records if r.levelno == logging.WARNING] == [
        "redis unavailable for rate limits"
    ]


async def test_redis_down_fails_closed_when_configured(prefix: str) -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", prefix=prefix, fail_open=False)
    started = time.perf_counter()
    try:
        with pytest.raises(ServiceUnavailable) as caught:
            await limiter.acquire([rpm(1)])
    finally:
        await limiter.close()
    assert time.perf_counter() - started < 10.0  # refused at once; hung would be worse
    assert caught.value.retry_after == 1.0
    assert limiter.failures == 1


@pytest.mark.parametrize(("fail_open", "status"), [(True, 200), (False, 503)])
async def test_a_client_sees_the_configured_redis_failure_mode(
    database_url: str, upstream: FakeUpstream, fail_open: bool, status: int
) -> None:
    models = [
        {
            "name": "gpt-test",
            "deployments": [{"provider": "openai", "base_url": f"{upstream.base_url}/v1"}],
        }
    ]
    async with serve_app(
        database_url=database_url,
        models=models,
        redis_url=f"redis://127.0.0.1:{free_port()}/0",
        access={"default_rpm": 100, "redis_fail_open": fail_open},
    ) as server:
        reply_status, body = await chat(server)
        async with aiohttp.ClientSession() as http, http.get(f"{server.url}/metrics") as resp:
            metrics = await resp.text()
    assert reply_status == status, body
    mode = "fail_open" if fail_open else "fail_closed"
    assert f'propylon_ratelimit_redis_failures_total{{mode="{mode}"}} 1.0' in metrics
    if status == 503:
        assert body["error"]["code"] == "service_unavailable"
        assert upstream.calls.get("/v1/chat/completions", 0) == 0


async def chat(server: AppServer) -> tuple[int, dict[str, Any]]:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.v1}/chat/completions", json=body, headers=server.headers) as resp,
    ):
        return resp.status, await resp.json()
