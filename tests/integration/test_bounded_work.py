"""One oversized request does not stall everyone else: token counting and guard scans are
bounded, so an 8 MB prompt (refused by the context-window check after the guard and the token
limit have read it) adds less than 50 ms to the p99 latency of concurrent small requests.

The p99 is compared with a baseline measured the same way just before (200 samples each), so
the load of a shared test machine cancels out; the process posting the 8 MB is started, with
the body read, before either (forking the test process is not the server's cost); the heap is
settled as `propylon serve` does, so a full collection of the test process's objects does not
pass for a stall. Unbounded, the same request held the event loop for about 5 s (2.1 s
counting tokens, 2.8 s of guard scans), then for the tens of ms orjson took to decode the 8 MB
in one call; the body is now decoded in pieces of 16 KiB with the loop free between them (see
the `bounded_work` section of docs/benchmarks.md). The baseline is measured under the same
load, so two CPU burners beside it (`scripts/test-under-load`) do not fail it by themselves:
6 of 8 runs passed there on a machine already at load 7-19 (docs/architecture.md, "Bounded
work on the event loop")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp
import orjson
import pytest

from propylon.local.memory import settle_heap
from propylon.testing import FakeUpstream
from propylon.testing.poster import Poster
from tests.support.servers import AppServer, serve_app


@pytest.fixture
async def server(database_url: str, upstream: FakeUpstream) -> AsyncIterator[AppServer]:
    models = [
        {
            "name": "gpt-test",
            "context_window": 128_000,
            "deployments": [{"provider": "openai", "base_url": f"{upstream.base_url}/v1"}],
        }
    ]
    async with serve_app(
        database_url=database_url,
        models=models,
        guard={"enabled": True, "classifier": False},
        access={"default_tpm": 1_000_000_000},  # a token limit: the prompt is counted
    ) as running:
        yield running


async def repeat(work: Callable[[], Awaitable[None]], times: int) -> None:
    for _ in range(times):
        await work()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


SAMPLES = 200  # small requests in each phase (4 loops): p99 is the 2nd slowest of 200


async def test_an_8_mb_request_adds_under_50_ms_to_the_p99_of_small_requests(
    server: AppServer, tmp_path: Path
) -> None:
    small = orjson.dumps(
        {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    )
    big = orjson.dumps(
        {"model": "gpt-test", "messages": [{"role": "user", "content": "lorem ipsum " * 660_000}]}
    )
    assert 7_900_000 < len(big) < 8 * 1024 * 1024  # 8 MB, under the body limit
    headers = {**server.headers, "Content-Type": "application/json"}
    url = f"{server.v1}/chat/completions"
    # Started before measuring: forking this process and writing 8 MB are the test's costs.
    poster = await Poster.ready(url, big, server.api_key, tmp_path)
    latencies: list[float] = []
    done = asyncio.Event()

    async with aiohttp.ClientSession() as http:

        async def one_small() -> None:
            started = time.perf_counter()
            async with http.post(url, data=small, headers=headers) as response:
                await response.read()
                assert response.status == 200
            latencies.append((time.perf_counter() - started) * 1000.0)

        for _ in range(20):  # warm: connections open, encodings loaded
            await one_small()
        settle_heap()
        latencies.clear()
        await asyncio.gather(*(repeat(one_small, SAMPLES // 4) for _ in range(4)))
        baseline = p99(latencies)
        latencies.clear()

        async def small_loop() -> None:  # as many samples as the baseline, the 8 MB among them
            while not done.is_set() or len(latencies) < SAMPLES:
                await one_small()

        loops = [asyncio.create_task(small_loop()) for _ in range(4)]
        try:
            status, code = await poster.post()
        finally:
            done.set()
            await asyncio.gather(*loops)

    assert (status, code) == (400, "context_length_exceeded")
    assert len(latencies) >= SAMPLES
    # The 2nd slowest, as the baseline's p99 of 200: more samples here make it only stricter.
    during = sorted(latencies)[-2]
    assert during - baseline < 50.0, (baseline, during, sorted(latencies)[-6:])
