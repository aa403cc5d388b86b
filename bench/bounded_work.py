"""How long one 8 MB prompt holds the gateway's event loop, next to the loop idle.

One `propylon serve` (guard on, a token limit so the prompt is counted, a model with a
128,000-token window) in front of `propylon fake-upstream`. A probe sends `GET /healthz`
back to back on its own connection: a probe's latency is at least any stall of the server's
loop while it waited. In each round, the probe runs once with the server idle and once while
an 8 MB prompt (refused with 400 `context_length_exceeded`, as in
`tests/integration/test_bounded_work.py`) is sent from another process; the slowest probe of
each window is the loop's longest stall plus one probe's own time. Reported: the median and
worst over the rounds of both, and, as references measured in the same run, what decoding
the 8 MB body takes in this process with orjson in one call and in the gateway's pieces.

Run alone: ``python -m bench.bounded_work [--quick] [--output docs/benchmarks.md]``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from bench.document import stamp
from bench.processes import pin_self, served_on_fake_upstream
from bench.suite import Options, Section, main_for
from propylon.http.piecewise_json import loads_in_pieces
from propylon.testing.poster import Poster

PIECE = 16 * 1024  # as ``propylon.http.json`` decodes large bodies
BIG = {"model": "bench-chat", "messages": [{"role": "user", "content": "lorem ipsum " * 660_000}]}


def write_config(workdir: Path, upstream: str) -> Path:
    config = {
        "models": [
            {
                "name": "bench-chat",
                "context_window": 128_000,
                "deployments": [
                    {"provider": "openai", "base_url": f"{upstream}/v1", "model": "fake-gpt"}
                ],
            }
        ],
        "guard": {"enabled": True},
        "access": {"default_tpm": 1_000_000_000},  # a token limit: the prompt is counted
    }
    path = workdir / "bounded-work.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def probe_while(session: aiohttp.ClientSession, url: str, busy: asyncio.Future[Any]) -> float:
    """Back-to-back `GET /healthz` until ``busy`` is done; the slowest, in ms."""
    slowest = 0.0
    while not busy.done():
        started = time.perf_counter()
        async with session.get(url) as resp:
            await resp.read()
        slowest = max(slowest, (time.perf_counter() - started) * 1000.0)
    return slowest


async def decode_ms(body: bytes, times: int) -> tuple[float, float]:
    """The best times to decode ``body`` here, in ms: orjson in one call, and in pieces."""
    whole, pieces = float("inf"), float("inf")
    for _ in range(times):
        started = time.perf_counter()
        orjson.loads(body)
        whole = min(whole, time.perf_counter() - started)
        started = time.perf_counter()
        await loads_in_pieces(body, piece=PIECE)
        pieces = min(pieces, time.perf_counter() - started)
    return whole * 1000.0, pieces * 1000.0


async def run(options: Options) -> Section:
    pin_self()
    workdir = options.workdir
    body = orjson.dumps(BIG)
    idle: list[float] = []
    big: list[float] = []
    durations: list[float] = []
    async with served_on_fake_upstream(options, write_config, "bounded-work") as (url, _, key):
        chat = f"{url}/v1/chat/completions"
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(options.scaled(10, 2)):
                poster = await Poster.ready(chat, body, key, workdir)
                started = time.perf_counter()
                sending = asyncio.ensure_future(poster.post())
                big.append(await probe_while(session, f"{url}/healthz", sending))
                status, code = await sending
                durations.append(time.perf_counter() - started)
                if (status, code) != (400, "context_length_exceeded"):
                    raise RuntimeError(f"the 8 MB prompt got {status} {code}")
                quiet = asyncio.ensure_future(asyncio.sleep(durations[-1]))
                idle.append(await probe_while(session, f"{url}/healthz", quiet))
    reference = await decode_ms(body, options.scaled(10, 2))
    return Section("bounded_work", render(idle, big, durations, reference, len(body), options))


def render(
    idle: list[float],
    big: list[float],
    durations: list[float],
    decoding: tuple[float, float],
    size: int,
    options: Options,
) -> str:
    def row(name: str, values: list[float]) -> str:
        return f"| {name} | {statistics.median(values):.1f} ms | {max(values):.1f} ms |"

    extra = statistics.median(big) - statistics.median(idle)
    decode, pieces = decoding
    quick = " Quick run: numbers are not meaningful." if options.quick else ""
    return f"""## Bounded work: one 8 MB prompt and the event loop

{stamp(options.command)}{quick}

**Current:** while a {size / 1e6:.1f} MB prompt is received, decoded, counted and refused,
the gateway's slowest `GET /healthz` is {extra:+.1f} ms (median over rounds) against the same
probe with the gateway idle. Decoding that body with orjson in one call takes {decode:.1f} ms
in this process (best of {options.scaled(10, 2)}, same run), and {pieces:.1f} ms in pieces of
16 KiB as the gateway now does (`propylon.http.piecewise_json`, best of as many), during which
the event loop gets a turn after every piece. On a loaded machine both stretch with the
gateway's share of a CPU (the load average is in the line above). Before the decode went to
pieces, orjson held the loop for the whole body in one call (it holds the GIL, so a thread
did not help); token counting stops encoding after 32,768 characters and estimates the rest,
the guard scans a bounded prefix, the request log keeps a cut copy, a large prompt's cache key
is hashed in a thread, and the token encodings are loaded at start. Before issue 26 the same
request held the loop for about 5 s; with the decode still in one orjson call, this bench gave
+109.2 ms (2026-12-06 03:18 UTC, load average 7.4: idle 37.1 ms, in flight 146.3 ms, worst
round 1,727 ms).

| window | slowest probe, median of rounds | worst round |
|---|---|---|
{row("gateway idle", idle)}
{row("8 MB prompt in flight", big)}

Method: {len(big)} rounds; in each, a fresh process posts the 8 MB prompt (started and its
body read before the window opens) while one connection probes `GET /healthz` back to back
until the 400 arrives (median {statistics.median(durations) * 1000:.0f} ms), then the probe runs
for as long again with the gateway idle. A probe's latency holds any stall of the gateway's
loop while it waited, plus the probe's own round trip. The gateway: `propylon serve`, guard on,
a token limit (the prompt is counted), a model with a 128,000-token window. The same bound is
tested in `tests/integration/test_bounded_work.py` (p99 of small chat requests +50 ms at most).
"""


if __name__ == "__main__":
    main_for("bench.bounded_work")
