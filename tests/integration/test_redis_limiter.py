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

from propylon.access.budgets import Budget
from propylon.access.limits import Charge, Limits
from propylon.access.redis_limiter import RedisRateLimiter
from propylon.errors import ServiceUnavailable
from propylon.testing import FakeUpstream
from tests.support.processes import free_port
from tests.support.servers import AppServer, serve_app
from tests.support.tcp_proxy import TcpProxy

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


def budget(limit: float, cost: float, floor: float = 0.0) -> Charge:
    return Charge("b:k:usd", "usd", limit, cost, 86_400.0, window=True, floor=floor)


async def test_many_clients_reserving_from_one_budget_never_overspend_it(prefix: str) -> None:
    clients = [
        RedisRateLimiter(REDIS, prefix=prefix, fail_open=False, timeout_s=10) for _ in range(4)
    ]
    try:
        decisions = await asyncio.gather(
            *(clients[i % 4].acquire([rpm(1000), budget(1.0, 0.07)]) for i in range(40))
        )
        assert sum(d.allowed for d in decisions) == 14  # 14 x $0.07 = $0.98
        refused = [d for d in decisions if not d.allowed]
        assert all(d.exhausted == budget(1.0, 0.07) for d in refused)
        assert all(d.spent == pytest.approx(0.98) for d in refused)
        # Settling gives back what the calls did not spend: room for more.
        await clients[0].adjust([budget(1.0, -0.05)] * 14)
        assert (await clients[1].acquire([budget(1.0, 0.7)])).allowed
        # The recorded spend is a floor: a window never starts below it.
        assert not (await clients[2].acquire([budget(1.0, 0.01, floor=2.0)])).allowed
    finally:
        for client in clients:
            await client.close()


async def test_a_settlement_redis_misses_is_kept_counted_and_applied_later(
    prefix: str, caplog: pytest.LogCaptureFixture
) -> None:
    async with TcpProxy(6379) as redis:
        url = f"redis://127.0.0.1:{redis.port}/0"
        limiter = RedisRateLimiter(url, prefix=prefix, fail_open=False)
        try:
            assert (await limiter.acquire([budget(1.0, 0.9)])).allowed
            await redis.stop()
            settled = await limiter.adjust([budget(1.0, -0.8)])  # never raises
            assert settled.allowed
            assert (limiter.settle_failures, limiter.owed) == (1, 1)
            assert "redis unavailable at settle" in caplog.text
        finally:
            await limiter.close()
    # Redis is back (a new connection): the next call repays what was owed first.
    again = RedisRateLimiter(REDIS, prefix=prefix, fail_open=False)
    try:
        again._owed, limiter._owed = limiter._owed, {}
        assert (await again.acquire([budget(1.0, 0.85)])).allowed, "0.1 + 0.85 fits"
        assert again.owed == 0
    finally:
        await again.close()


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


async def test_redis_down_under_fail_open_still_refuses_what_recorded_spend_rules_out(
    prefix: str,
) -> None:
    limiter = RedisRateLimiter(f"redis://127.0.0.1:{free_port()}/0", prefix=prefix)
    try:
        refused = await limiter.acquire([rpm(1), budget(1.0, 0.3, floor=0.8)])
        admitted = await limiter.acquire([rpm(1), budget(1.0, 0.1, floor=0.8)])
    finally:
        await limiter.close()
    assert (refused.allowed, refused.exhausted, refused.spent) == (
        False,
        budget(1.0, 0.3, floor=0.8),
        0.8,
    )
    assert admitted.allowed


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


async def test_redis_dying_between_the_call_and_its_settlement_still_answers_and_records(
    database_url: str, upstream: FakeUpstream, prefix: str
) -> None:
    models = [
        {
            "name": "gpt-test",
            "deployments": [{"provider": "openai", "base_url": f"{upstream.base_url}/v1"}],
        }
    ]
    async with (
        TcpProxy(6379) as redis,
        serve_app(
            database_url=database_url,
            models=models,
            redis_url=f"redis://127.0.0.1:{redis.port}/0",
            access={"redis_fail_open": False, "redis_prefix": prefix},
        ) as server,
    ):
        services = server.app.state.services
        key, record = await services.access.create_key(
            "settle", limits=Limits(tpm=10_000), budget=Budget(period="day", tokens=10_000)
        )
        upstream.hold()
        body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
        async with aiohttp.ClientSession() as http:
            answer = asyncio.ensure_future(
                http.post(
                    f"{server.v1}/chat/completions",
                    json={**body, "max_tokens": 50},
                    headers={"Authorization": f"Bearer {key}"},
                )
            )
            async with asyncio.timeout(30):
                await upstream.wait_held(1)
            await redis.stop()  # admitted through Redis; Redis is gone when the call ends
            upstream.release()
            async with await answer as resp:
                assert resp.status == 200, await resp.text()
                assert (await resp.json())["usage"]["completion_tokens"] == 16
            async with http.get(f"{server.url}/metrics") as resp:
                metrics = await resp.text()
        await services.usage.flush()
        usage = await services.access.usage(record.id)
    [today] = usage["days"]
    assert (today["requests"], today["prompt_tokens"], today["completion_tokens"]) == (1, 1, 16)
    assert "propylon_ratelimit_settle_failures_total 1.0" in metrics
    assert "propylon_ratelimit_owed_buckets 2.0" in metrics  # the key's TPM and budget
