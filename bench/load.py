"""The load generator: an aiohttp client on uvloop, bounded in requests and in time.

Each function drives one URL and returns what it saw; the caller runs it against the gateway
and against the fake upstream directly, interleaved, and compares. Any non-2xx answer where a
2xx was expected counts as an error and is reported, never silently averaged in.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp
import orjson

_SERIAL = itertools.count()
MARKER = b"#00000000"
"""Replaced in each request's body by a serial number, so no two requests are alike."""


@dataclass(slots=True)
class Target:
    """Where to send one kind of request, and what to send.

    A body holding ``MARKER`` gets a new serial number in its place for every request, so
    caches keyed on the text (response cache, guard verdicts) see fresh traffic, as in life.
    """

    url: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    expect: int = 200
    variants: tuple[bytes, ...] = ()  # bodies taken in turn instead of ``body``, by serial

    def payload(self) -> bytes:
        if MARKER not in self.body and not self.variants:
            return self.body
        serial = next(_SERIAL)
        body = self.variants[serial % len(self.variants)] if self.variants else self.body
        return body.replace(MARKER, b"#%08d" % (serial % 100_000_000))


def chat_target(
    root: str,
    model: str,
    *,
    stream: bool = False,
    key: str | None = None,
    deterministic: bool = False,
    messages: Sequence[str] = (),
) -> Target:
    """A small chat completion (one short user message) against ``root/v1``;
    ``deterministic`` adds ``temperature: 0``, which makes the response cache look it up.
    ``messages``: user messages taken in turn, each with the serial appended (default: one
    template, "Say hello to request <serial>.")."""

    def body_of(content: str) -> bytes:
        body: dict[str, object] = {
            "model": model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": 16,
        }
        if deterministic:
            body["temperature"] = 0
        if stream:
            body["stream"] = True
        return orjson.dumps(body)

    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    variants = tuple(body_of(f"{m} (ref {MARKER.decode()})") for m in messages)
    template = body_of(f"Say hello to request {MARKER.decode()}.")
    return Target(f"{root}/v1/chat/completions", template, headers, variants=variants)


def client(concurrency: int = 1) -> aiohttp.ClientSession:
    """A keep-alive session with room for ``concurrency`` connections."""
    connector = aiohttp.TCPConnector(limit=concurrency + 4, force_close=False)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=30), auto_decompress=False
    )


@dataclass(slots=True)
class Latencies:
    """Sequential request times in milliseconds, and failures."""

    ms: list[float] = field(default_factory=list)
    errors: int = 0
    overhead_ms: list[float] = field(default_factory=list)  # the gateway's header, when sent

    def pct(self, p: float) -> float:
        return percentile(self.ms, p)


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (0–100), nearest-rank on sorted values; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = math.ceil(p / 100 * len(ordered))
    return ordered[max(0, min(len(ordered), rank) - 1)]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


OVERHEAD_HEADER = "x-propylon-overhead-ms"
"""The gateway's own account: its time before the response started, less upstream waits."""


async def _one(session: aiohttp.ClientSession, target: Target) -> tuple[bool, float | None]:
    """Send one request; whether it got the expected status, and the overhead header if any."""
    async with session.post(target.url, data=target.payload(), headers=target.headers) as resp:
        await resp.read()
        overhead = resp.headers.get(OVERHEAD_HEADER)
        return resp.status == target.expect, float(overhead) if overhead else None


async def sequential(
    session: aiohttp.ClientSession, target: Target, n: int, *, max_s: float = 60.0
) -> Latencies:
    """``n`` requests one after another (stopping early after ``max_s``), each timed."""
    out = Latencies()
    deadline = time.perf_counter() + max_s
    for _ in range(n):
        started = time.perf_counter()
        ok, overhead = await _one(session, target)
        out.ms.append((time.perf_counter() - started) * 1000)
        out.errors += not ok
        if overhead is not None:
            out.overhead_ms.append(overhead)
        if time.perf_counter() > deadline:
            break
    return out


async def first_bytes(
    session: aiohttp.ClientSession, target: Target, n: int, *, max_s: float = 60.0
) -> Latencies:
    """Streamed requests one after another: time to the first SSE ``data:`` event each."""
    out = Latencies()
    deadline = time.perf_counter() + max_s
    for _ in range(n):
        started = time.perf_counter()
        first: float | None = None
        async with session.post(target.url, data=target.payload(), headers=target.headers) as resp:
            async for chunk in resp.content.iter_any():
                if first is None and b"data:" in chunk:
                    first = time.perf_counter()
            ok = resp.status == target.expect and first is not None
        out.ms.append(((first or time.perf_counter()) - started) * 1000)
        out.errors += not ok
        if time.perf_counter() > deadline:
            break
    return out


@dataclass(frozen=True, slots=True)
class Throughput:
    completed: int
    errors: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.completed / self.seconds if self.seconds else 0.0


async def closed_loop(
    session: aiohttp.ClientSession,
    target: Target,
    *,
    concurrency: int,
    seconds: float,
    max_requests: int = 1_000_000,
) -> Throughput:
    """``concurrency`` workers each sending back-to-back for ``seconds``; completed per second.

    Requests started before the deadline are counted when they finish, so the window is the
    time from the start to the last completion.
    """
    started = time.perf_counter()
    deadline = started + seconds
    budget = [max_requests]
    completed = 0
    errors = 0

    async def worker() -> None:
        nonlocal completed, errors
        while time.perf_counter() < deadline and budget[0] > 0:
            budget[0] -= 1
            try:
                ok, _ = await _one(session, target)
            except (aiohttp.ClientError, TimeoutError):
                ok = False
            if ok:
                completed += 1
            else:
                errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return Throughput(completed, errors, time.perf_counter() - started)
