"""The request path refuses in order of cost: a request the gateway would refuse anyway (too
many messages, every deployment down) is refused before the guard's classifier embeds a single
message (issue 27); a client over its rate limit is refused before the guard reads its text
(issue 26)."""

from __future__ import annotations

import io
import statistics
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from propylon.access.limits import Limits
from propylon.gateway.circuit_breaker import BreakerState
from propylon.testing import FakeUpstream
from tests.support.servers import AppServer, serve_app


class Counted:
    """Counts the calls of one async method of an object and passes them on."""

    def __init__(self, owner: Any, name: str) -> None:
        self.calls = 0
        real = getattr(owner, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await real(*args, **kwargs)

        setattr(owner, name, counted)


@pytest.fixture
async def server(database_url: str, upstream: FakeUpstream) -> AsyncIterator[AppServer]:
    models = [
        {
            "name": "gpt-test",
            "deployments": [
                {"provider": "openai", "base_url": f"{upstream.base_url}/v1", "model": "fake-gpt"},
                {"provider": "openai", "base_url": f"{upstream.base_url}/v1", "model": "fake-2"},
            ],
        }
    ]
    async with serve_app(
        database_url=database_url,
        models=models,
        breaker={"min_calls": 1, "cooldown_s": 600},
    ) as running:
        yield running


async def post(
    http: aiohttp.ClientSession, server: AppServer, body: bytes
) -> tuple[int, Any, float]:
    """Status, error body and the server's own time on the request (`x-propylon-overhead-ms`:
    no client or network time in it)."""
    async with http.post(
        f"{server.v1}/chat/completions",
        data=io.BytesIO(body),
        headers={**server.headers, "Content-Type": "application/json"},
    ) as resp:
        payload = await resp.json(content_type=None)
        return resp.status, payload, float(resp.headers["x-propylon-overhead-ms"])


async def test_a_hundred_thousand_messages_are_refused_before_anything_is_embedded(
    server: AppServer,
) -> None:
    detector = server.app.state.services.detector
    assert detector is not None, "the guard is on by default"
    classified = Counted(detector, "scan_many")
    embedded = Counted(detector._embedder, "embed")
    messages = [{"role": "user", "content": f"message {n}"} for n in range(100_000)]
    body = orjson.dumps({"model": "gpt-test", "messages": messages})
    assert len(body) > 3_000_000
    times = []
    async with aiohttp.ClientSession() as http:
        for _ in range(3):
            status, error, server_ms = await post(http, server, body)
            assert status == 400, error
            assert error["error"]["code"] == "array_above_max_length"
            assert error["error"]["param"] == "messages"
            times.append(server_ms)
    assert (classified.calls, embedded.calls) == (0, 0)
    # The bound; before, this request cost 69 s of CPU and 2 GB. The best of three
    # keeps a busy machine's hiccup out of it; the time includes reading and parsing 3.9 MB.
    assert min(times) < 100.0, times
    print(f"100k messages refused: {', '.join(f'{t:.1f}' for t in times)} ms")


async def test_every_deployment_down_is_refused_without_running_the_classifier(
    server: AppServer,
) -> None:
    services = server.app.state.services
    for breaker in services.gateway.breakers().values():
        assert breaker.allow()
        breaker.record_failure()
        assert breaker.state is BreakerState.OPEN
    classified = Counted(services.detector, "scan_many")
    times = []
    async with aiohttp.ClientSession() as http:
        for n in range(200):
            prompt = f"a new prompt, never seen before: number {n}"
            body = orjson.dumps(
                {"model": "gpt-test", "messages": [{"role": "user", "content": prompt}]}
            )
            status, error, server_ms = await post(http, server, body)
            assert status == 503, error
            assert error["error"]["code"] == "all_deployments_unavailable"
            times.append(server_ms)
    assert classified.calls == 0
    p99 = statistics.quantiles(times, n=100)[98]
    # The issue asks for 2 ms p99 (measured: see docs/benchmarks.md); a shared CI machine gets
    # ten times that. The classifier alone took 5.6 ms p99 here before.
    assert p99 < 20.0, (p99, sorted(times)[-5:])
    print(f"all deployments down: p50 {statistics.median(times):.2f} ms, p99 {p99:.2f} ms")


async def test_a_client_over_its_rate_limit_is_refused_before_the_guard_reads_its_text(
    server: AppServer,
) -> None:
    services = server.app.state.services
    key, _ = await services.access.create_key("over-the-limit", limits=Limits(rpm=1))
    classified = Counted(services.detector, "scan_many")
    body = orjson.dumps({"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}]})
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(2):
            async with http.post(
                f"{server.v1}/chat/completions",
                data=body,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            ) as resp:
                statuses.append((resp.status, (await resp.json())))
    assert statuses[0][0] == 200, statuses[0]
    assert statuses[1][0] == 429, statuses[1]
    assert statuses[1][1]["error"]["code"] == "rate_limit_exceeded"
    assert classified.calls == 1  # the admitted request only
