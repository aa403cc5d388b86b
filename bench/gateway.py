"""The gateway's overhead: every number through `propylon serve` next to the same one direct.

One embedded PostgreSQL, one `propylon fake-upstream`, one `propylon serve` (one worker), all
real processes on 127.0.0.1. The client alternates between the gateway and the fake upstream
in rounds, so drift on a busy machine falls on both sides alike.

Measures (issue 3's bench point, and the gateway part of issue 11):
CPU per proxied request of the gateway process (the fake upstream's own as context); added
latency p50/p99, sequential; throughput at 50 concurrent requests with an instant and a 100 ms
upstream as a share of direct; streaming first-byte overhead; 503 fail-fast latency with every
deployment down; RSS idle and after load.

Run alone: ``python -m bench.gateway [--quick] [--output docs/benchmarks.md]``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import yaml

from bench import load
from bench.document import stamp
from bench.keys import BenchKey, bench_key
from bench.load import Latencies, Target, Throughput, percentile
from bench.processes import (
    GATEWAY_CORE,
    Proc,
    cpu_seconds,
    embedded_database,
    environment_note,
    fake_upstream,
    free_port,
    gateway,
    pin_self,
    pinning_note,
    rss_mb,
    spawn,
)
from bench.suite import Options, Section, main_for
from propylon import __version__

CONCURRENCY = 50
BLOCK_MAX_S = 4.0
"""Longest a block of sequential requests may run, so a slow machine still finishes."""
SLOW_UPSTREAM_MS = 100.0
CLASSIFIER_OFF = "PROPYLON_GUARD__CLASSIFIER"
SEMANTIC_OFF = "PROPYLON_CACHE__SEMANTIC"
INT8 = "PROPYLON_LOCAL_INT8"
HOT_PATH: dict[str, str | None] = {CLASSIFIER_OFF: "false", SEMANTIC_OFF: "false"}
"""Issue 11's hot path: auth, limits, cache lookup, routing and request log. Requests are
deterministic, so the exact cache looks each one up (a miss) and stores its answer. The two
parts that embed the prompt with MiniLM, the guard's classifier and the semantic cache, are
off here and measured apart, on (the default settings' rows)."""


def hot_path_note() -> str:
    """How the bench's gateway differs from the default settings, for the reports."""
    settings = " and ".join(f"`{name}={value}`" for name, value in HOT_PATH.items())
    return f"started with {settings}; deterministic requests, so the exact cache is looked up"


@dataclass(frozen=True, slots=True)
class Goal:
    text: str
    limit: float
    higher_is_better: bool = False

    def verdict(self, value: float) -> str:
        ok = value >= self.limit if self.higher_is_better else value <= self.limit
        return "met" if ok else "**missed**"


GOALS = {
    "cpu": Goal("≤ 1.0 ms", 1.0),
    "p50": Goal("≤ 1 ms added", 1.0),
    "p99": Goal("≤ 5 ms added", 5.0),
    "share_slow": Goal("≥ 90 %", 90.0, higher_is_better=True),
    "first_byte": Goal("≤ 1 ms added", 1.0),
    "fail_fast": Goal("< 5 ms", 5.0),
}
"""Issue 11's goals (fail-fast: issue 3's)."""


@dataclass(slots=True)
class Side:
    """What one side (through the gateway, or direct) saw in one kind of measurement."""

    latencies: Latencies = field(default_factory=Latencies)
    throughput: list[Throughput] = field(default_factory=list)
    cpu_s: float = 0.0  # CPU of the process answering the client on this side
    upstream_cpu_s: float = 0.0
    requests: int = 0

    @property
    def per_second(self) -> float:
        done = sum(t.completed for t in self.throughput)
        seconds = sum(t.seconds for t in self.throughput)
        return done / seconds if seconds else 0.0

    @property
    def errors(self) -> int:
        return self.latencies.errors + sum(t.errors for t in self.throughput)

    def cpu_ms_per_request(self) -> float:
        return self.cpu_s * 1000 / self.requests if self.requests else float("nan")

    def upstream_cpu_ms_per_request(self) -> float:
        return self.upstream_cpu_s * 1000 / self.requests if self.requests else float("nan")


@dataclass(slots=True)
class Pair:
    through: Side = field(default_factory=Side)
    direct: Side = field(default_factory=Side)


@dataclass(slots=True)
class Results:
    sequential: Pair = field(default_factory=Pair)
    instant: Pair = field(default_factory=Pair)
    slow: Pair = field(default_factory=Pair)
    first_byte: Pair = field(default_factory=Pair)
    fail_fast: Latencies = field(default_factory=Latencies)
    rss_idle_mb: float = 0.0
    rss_loaded_mb: float = 0.0
    cache_status: str = "?"
    defaults: Side | None = None  # sequential, guard classifier on
    defaults_int8: Side | None = None  # the same, MiniLM with int8 kernels (``local_int8``)
    bare: Side | None = None  # sequential, through the bare Starlette + aiohttp proxy


@dataclass(slots=True)
class Rig:
    """The running processes and the client's targets."""

    gateway: Proc
    upstream: Proc
    upstream_url: str
    database_url: str
    config: Path
    through: Target
    direct: Target
    through_stream: Target
    direct_stream: Target
    down: Target


Measure = Callable[[Target], Awaitable[Latencies | Throughput]]


async def _timed(rig: Rig, side: Side, target: Target, measure: Measure, *, through: bool) -> None:
    """Run ``measure`` on ``target``, charging CPU to the side (gateway or upstream)."""
    gw0, up0 = cpu_seconds(rig.gateway.pid), cpu_seconds(rig.upstream.pid)
    outcome = await measure(target)
    gw1, up1 = cpu_seconds(rig.gateway.pid), cpu_seconds(rig.upstream.pid)
    side.upstream_cpu_s += up1 - up0
    side.cpu_s += (gw1 - gw0) if through else (up1 - up0)
    if isinstance(outcome, Throughput):
        side.throughput.append(outcome)
        side.requests += outcome.completed + outcome.errors
    else:
        side.latencies.ms.extend(outcome.ms)
        side.latencies.overhead_ms.extend(outcome.overhead_ms)
        side.latencies.errors += outcome.errors
        side.requests += len(outcome.ms)


async def _rounds(rig: Rig, pair: Pair, rounds: int, measure: Measure, *, stream: bool) -> None:
    """Alternate direct and through, switching which goes first each round."""
    through = rig.through_stream if stream else rig.through
    direct = rig.direct_stream if stream else rig.direct
    for i in range(rounds):
        order = [(pair.direct, direct, False), (pair.through, through, True)]
        for side, target, is_through in order if i % 2 == 0 else reversed(order):
            await _timed(rig, side, target, measure, through=is_through)


async def set_upstream(http: aiohttp.ClientSession, url: str, behaviour: dict[str, object]) -> None:
    async with http.post(f"{url}/_fake/behaviour", data=orjson.dumps(behaviour)) as resp:
        if resp.status != 200:
            raise RuntimeError(f"fake upstream refused behaviour: {await resp.text()}")


async def measure(rig: Rig, options: Options) -> Results:
    """Every measurement of the family, in a fixed order."""
    res = Results()
    rounds = options.scaled(4, 1)
    n_seq = options.scaled(2000, 60)
    n_stream = options.scaled(1000, 40)
    n_fail = options.scaled(500, 40)
    window_s = options.scaled(5, 1)
    res.rss_idle_mb = rss_mb(rig.gateway.pid)

    async with load.client(1) as one, load.client(CONCURRENCY) as many:
        for target in (rig.direct, rig.through, rig.direct_stream, rig.through_stream):
            warm = await load.sequential(one, target, options.scaled(200, 10), max_s=BLOCK_MAX_S)
            if warm.errors:
                raise RuntimeError(f"warm-up failed on {target.url}; see the logs")
        res.cache_status = await _cache_status(one, rig.through)

        async def seq(t: Target) -> Latencies:
            return await load.sequential(one, t, n_seq // rounds, max_s=BLOCK_MAX_S)

        async def first(t: Target) -> Latencies:
            return await load.first_bytes(one, t, n_stream // rounds, max_s=BLOCK_MAX_S)

        async def closed(t: Target) -> Throughput:
            return await load.closed_loop(many, t, concurrency=CONCURRENCY, seconds=window_s)

        await _rounds(rig, res.sequential, rounds, seq, stream=False)
        await _rounds(rig, res.instant, 2 if not options.quick else 1, closed, stream=False)
        await set_upstream(one, rig.upstream_url, {"latency_ms": SLOW_UPSTREAM_MS})
        await _rounds(rig, res.slow, 2 if not options.quick else 1, closed, stream=False)
        await set_upstream(one, rig.upstream_url, {})
        await _rounds(rig, res.first_byte, rounds, first, stream=True)
        res.rss_loaded_mb = rss_mb(rig.gateway.pid)
        res.fail_fast = await _fail_fast(one, rig.down, n_fail)
    return res


async def _cache_status(session: aiohttp.ClientSession, target: Target) -> str:
    """What the cache did with the bench's request: it must not be a hit, or we measure it."""
    async with session.post(target.url, data=target.payload(), headers=target.headers) as resp:
        await resp.read()
        status = resp.headers.get("x-propylon-cache", "none")
    if status.startswith("hit"):
        raise RuntimeError(f"the bench's request was served from the cache ({status})")
    return status


async def _fail_fast(session: aiohttp.ClientSession, down: Target, n: int) -> Latencies:
    """Open the breakers of a model whose deployments are all dead, then time the 503s."""
    for _ in range(30):  # each failing request records failures until the breakers open
        async with session.post(down.url, data=down.payload(), headers=down.headers) as resp:
            await resp.read()
            if resp.status == 503 and "retry-after" in resp.headers:
                break
    else:
        raise RuntimeError("the breakers of the dead model never opened")
    return await load.sequential(session, down, n, max_s=BLOCK_MAX_S)


def write_config(workdir: Path, upstream: str) -> Path:
    """`bench-chat` on the fake upstream; `bench-down` on two ports where nothing listens."""
    dead = [f"http://127.0.0.1:{free_port()}/v1" for _ in range(2)]
    config = {
        # A long cooldown keeps the dead model's breakers open for the whole run.
        "breaker": {"cooldown_s": 600},
        "models": [
            {
                "name": "bench-chat",
                "deployments": [
                    {"provider": "openai", "base_url": f"{upstream}/v1", "model": "fake-gpt"}
                ],
            },
            {
                "name": "bench-down",
                "deployments": [
                    {"provider": "openai", "base_url": url, "model": "x", "name": f"down-{i}"}
                    for i, url in enumerate(dead)
                ],
            },
        ],
    }
    path = workdir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@asynccontextmanager
async def open_rig(options: Options) -> AsyncIterator[tuple[Rig, BenchKey]]:
    """The database, the fake upstream and a ready gateway with a key; torn down at exit."""
    pin_self()
    workdir = options.workdir
    async with (
        embedded_database(options) as database_url,
        fake_upstream(workdir) as (upstream_url, upstream),
    ):
        config = write_config(workdir, upstream_url)
        async with gateway(workdir, config, database_url, env=HOT_PATH) as (gateway_url, gw):
            key = await bench_key(gateway_url)

            def target(root: str, model: str, *, stream: bool = False) -> Target:
                return load.chat_target(
                    root, model, stream=stream, key=key.value, deterministic=True
                )

            rig = Rig(
                gateway=gw,
                upstream=upstream,
                upstream_url=upstream_url,
                database_url=database_url,
                config=config,
                through=target(gateway_url, "bench-chat"),
                direct=target(upstream_url, "fake-gpt"),
                through_stream=target(gateway_url, "bench-chat", stream=True),
                direct_stream=target(upstream_url, "fake-gpt", stream=True),
                down=target(gateway_url, "bench-down"),
            )
            rig.down.expect = 503
            yield rig, key


async def _sequential_side(proc: Proc, target: Target, options: Options, n: int) -> Side:
    """``n`` sequential requests to ``target`` after a warm-up, with ``proc``'s CPU."""
    side = Side()
    async with load.client(1) as one:
        await load.sequential(one, target, options.scaled(200, 10), max_s=BLOCK_MAX_S)
        cpu0 = cpu_seconds(proc.pid)
        side.latencies = await load.sequential(
            one, target, options.scaled(n, 40), max_s=3 * BLOCK_MAX_S
        )
        side.cpu_s = cpu_seconds(proc.pid) - cpu0
    side.requests = len(side.latencies.ms)
    return side


async def measure_defaults(rig: Rig, options: Options, *, int8: bool = False) -> Side:
    """Sequential requests through a second gateway with the guard's classifier on (the
    default), so the report also shows what the default settings cost; ``int8``: with
    ``PROPYLON_LOCAL_INT8=true`` as well."""
    env: dict[str, str | None] = {CLASSIFIER_OFF: None, SEMANTIC_OFF: None}
    if int8:
        env[INT8] = "true"
    name = "gateway-defaults-int8" if int8 else "gateway-defaults"
    async with gateway(options.workdir, rig.config, rig.database_url, name=name, env=env) as (
        url,
        proc,
    ):
        key = await bench_key(url)
        target = load.chat_target(url, "bench-chat", key=key.value, deterministic=True)
        return await _sequential_side(proc, target, options, 1000)


async def measure_bare_proxy(rig: Rig, options: Options) -> Side:
    """Sequential requests through ``bench/bare_proxy.py`` on the gateway's core: the floor."""
    port = free_port()
    args = [sys.executable, "-m", "bench.bare_proxy", str(port), rig.upstream_url]
    log = options.workdir / f"bare-proxy-{port}.log"
    async with spawn(args, log=log, core=GATEWAY_CORE) as proc:
        target = load.chat_target(
            f"http://127.0.0.1:{port}", "fake-gpt", key="bench", deterministic=True
        )
        await wait_ready_post(target, proc)
        return await _sequential_side(proc, target, options, 2000)


async def wait_ready_post(target: Target, proc: Proc, timeout_s: float = 30.0) -> None:
    """Until ``target`` answers 200 (the bare proxy has no readiness route)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    async with load.client(1) as http:
        while True:
            if proc.process.returncode is not None:
                raise RuntimeError(f"bare proxy exited:\n{proc.tail()}")
            try:
                async with http.post(
                    target.url, data=target.payload(), headers=target.headers
                ) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"bare proxy not ready:\n{proc.tail()}")
            await asyncio.sleep(0.05)


async def run(options: Options) -> Section:
    async with open_rig(options) as (rig, key):
        results = await measure(rig, options)
        results.defaults = await measure_defaults(rig, options)
        results.defaults_int8 = await measure_defaults(rig, options, int8=True)
        results.bare = await measure_bare_proxy(rig, options)
    return Section("gateway", render(results, options, key))


def _sent(pair: Pair) -> str:
    """Requests made on each side (a slow machine hits the time bound before the count)."""
    return f"{len(pair.direct.latencies.ms)} direct and {len(pair.through.latencies.ms)} through"


def _ms(value: float) -> str:
    return f"{value:.2f} ms"


Row = tuple[str, str, str, str, str, str]


def _sequential_rows(label: str, side: Side, who: str, direct_p50: float) -> list[Row]:
    """Two context rows for a side measured sequentially: its CPU and its added p50."""
    p50 = side.latencies.pct(50)
    cpu = f"{_ms(side.cpu_ms_per_request())} ({who})"
    added = f"+{_ms(p50 - direct_p50)}"
    return [
        (f"{label}: CPU per request, sequential", cpu, "", "", "(context)", ""),
        (f"{label}: latency p50, sequential", _ms(p50), _ms(direct_p50), added, "(context)", ""),
    ]


def _default_rows(res: Results) -> list[Row]:
    """Context rows: the floor (bare proxy), and the default settings (classifier on)."""
    direct_p50 = res.sequential.direct.latencies.pct(50)
    rows: list[Row] = []
    if res.bare is not None:
        label = "floor: bare Starlette + aiohttp proxy"
        rows += _sequential_rows(label, res.bare, "bare proxy", direct_p50)
        through = res.sequential.through.cpu_ms_per_request()
        floor = res.bare.cpu_ms_per_request()
        # A short run can measure the floor's CPU below the clock's resolution: no ratio then.
        ratio = f"{through / floor:.2f} ×" if floor > 0 else "n/a (floor below clock resolution)"
        rows.append(
            (
                "gateway's CPU per request over the floor's, sequential",
                ratio,
                "",
                "",
                "(context)",
                "",
            )
        )
    if res.defaults is not None:
        label = "… default settings (guard classifier, semantic cache)"
        rows += _sequential_rows(label, res.defaults, "gateway", direct_p50)
    if res.defaults_int8 is not None:
        label = "… default settings, MiniLM with int8 kernels (`local_int8`)"
        rows += _sequential_rows(label, res.defaults_int8, "gateway", direct_p50)
    return rows


def _defaults_note(res: Results) -> str:
    note = ""
    if res.bare is not None:
        note += (
            "- Floor rows: `bench/bare_proxy.py` (Starlette on uvicorn with the same settings, "
            "one route relaying to the fake upstream with aiohttp; nothing else) on the "
            f"gateway's core, {res.bare.requests} sequential requests. Absolute figures "
            "depend on the host (the CPU and kernel build in the line above: the bare proxy "
            "cost 0.32 to 0.76 ms of CPU per request on three virtual machines of the same "
            "size), and the ratio row, gateway over floor, moves less.\n"
        )
    if res.defaults is None:
        return note
    return note + (
        "- Default settings rows: a second `propylon serve` on the same database, started "
        f"without `{CLASSIFIER_OFF}` and `{SEMANTIC_OFF}`, so each new user message is "
        "embedded by the guard's classifier and, on a miss, by the semantic cache (then a "
        f"pgvector search); {res.defaults.requests} sequential requests, after the rest. "
        f"The int8 rows: a third, also with `{INT8}=true` (the local embedding model's layers "
        "on int8 kernels; its vectors are within cosine 0.99 of the default ones, see "
        "the analysis).\n"
    )


def render(res: Results, options: Options, key: BenchKey) -> str:
    """The section: provenance, one table, and what the numbers include."""
    seq, inst, slow, fb = res.sequential, res.instant, res.slow, res.first_byte
    added_p50 = seq.through.latencies.pct(50) - seq.direct.latencies.pct(50)
    added_p99 = seq.through.latencies.pct(99) - seq.direct.latencies.pct(99)
    fb_p50 = fb.through.latencies.pct(50) - fb.direct.latencies.pct(50)
    fb_p99 = fb.through.latencies.pct(99) - fb.direct.latencies.pct(99)
    share_inst = 100 * inst.through.per_second / inst.direct.per_second
    share_slow = 100 * slow.through.per_second / slow.direct.per_second
    own = seq.through.latencies.overhead_ms
    cpu_seq = seq.through.cpu_ms_per_request()
    cpu_conc = inst.through.cpu_ms_per_request()
    g = GOALS
    rows = [
        (
            "CPU per proxied request, sequential",
            _ms(cpu_seq) + " (gateway)",
            _ms(seq.direct.cpu_ms_per_request()) + " (fake upstream)",
            "",
            g["cpu"].text,
            g["cpu"].verdict(cpu_seq),
        ),
        (
            f"CPU per proxied request, {CONCURRENCY} concurrent",
            _ms(cpu_conc) + " (gateway)",
            _ms(inst.direct.cpu_ms_per_request()) + " (fake upstream)",
            "",
            g["cpu"].text,
            g["cpu"].verdict(cpu_conc),
        ),
        (
            "latency p50, sequential",
            _ms(seq.through.latencies.pct(50)),
            _ms(seq.direct.latencies.pct(50)),
            f"+{_ms(added_p50)}",
            g["p50"].text,
            g["p50"].verdict(added_p50),
        ),
        (
            "latency p99, sequential",
            _ms(seq.through.latencies.pct(99)),
            _ms(seq.direct.latencies.pct(99)),
            f"+{_ms(added_p99)}",
            g["p99"].text,
            g["p99"].verdict(added_p99),
        ),
        (
            "gateway's own `x-propylon-overhead-ms`, p50 / p99",
            f"{_ms(percentile(own, 50))} / {_ms(percentile(own, 99))}",
            "",
            "",
            "(context)",
            "",
        ),
        (
            f"throughput, {CONCURRENCY} concurrent, instant upstream",
            f"{inst.through.per_second:,.0f} req/s",
            f"{inst.direct.per_second:,.0f} req/s",
            f"{share_inst:.0f} % of direct",
            "(context)",
            "",
        ),
        (
            f"throughput, {CONCURRENCY} concurrent, {SLOW_UPSTREAM_MS:.0f} ms upstream",
            f"{slow.through.per_second:,.0f} req/s",
            f"{slow.direct.per_second:,.0f} req/s",
            f"{share_slow:.1f} % of direct",
            g["share_slow"].text,
            g["share_slow"].verdict(share_slow),
        ),
        (
            "stream: first SSE event p50",
            _ms(fb.through.latencies.pct(50)),
            _ms(fb.direct.latencies.pct(50)),
            f"+{_ms(fb_p50)}",
            g["first_byte"].text,
            g["first_byte"].verdict(fb_p50),
        ),
        (
            "stream: first SSE event p99",
            _ms(fb.through.latencies.pct(99)),
            _ms(fb.direct.latencies.pct(99)),
            f"+{_ms(fb_p99)}",
            "",
            "",
        ),
        (
            "all deployments down → 503, p50 / p99",
            f"{_ms(res.fail_fast.pct(50))} / {_ms(res.fail_fast.pct(99))}",
            "",
            "",
            g["fail_fast"].text,
            g["fail_fast"].verdict(res.fail_fast.pct(99)),
        ),
        *_default_rows(res),
        (
            "gateway RSS: idle / after the load above",
            f"{res.rss_idle_mb:.0f} MB / {res.rss_loaded_mb:.0f} MB",
            "",
            "",
            "(idle with the embedding model: see cold start)",
            "",
        ),
    ]
    header = "| measurement | through Propylon | direct to fake upstream | Propylon | goal | |"
    table = [header, "|---|---:|---:|---:|---|---|"]
    table += ["| " + " | ".join(row) + " |" for row in rows]
    errors = {
        "sequential": seq.through.errors + seq.direct.errors,
        "throughput": inst.through.errors
        + inst.direct.errors
        + slow.through.errors
        + slow.direct.errors,
        "stream": fb.through.errors + fb.direct.errors,
        "fail-fast (not 503)": res.fail_fast.errors,
        "default settings": res.defaults.errors if res.defaults is not None else 0,
        "int8": res.defaults_int8.errors if res.defaults_int8 is not None else 0,
        "bare proxy": res.bare.errors if res.bare is not None else 0,
    }
    failed = ", ".join(f"{k}: {v}" for k, v in errors.items() if v) or "none"
    quick = " **Quick run: too short for the numbers to mean anything.**" if options.quick else ""
    window = options.scaled(5, 1)
    notes = f"""\
## Gateway overhead

{stamp(options.command)}{quick}

{chr(10).join(table)}

How it was measured:

- Propylon {__version__}: `propylon serve` (one worker, uvloop + httptools, the request path as
  `app.py` composes it) relays the model `bench-chat` to `propylon fake-upstream`, which
  answers at once (16 tokens); an embedded PostgreSQL 18 holds the state.
- Hot path as issue 11 defines it (auth, limits, cache lookup, routing, request log): the
  bench starts this gateway with `{CLASSIFIER_OFF}=false` and `{SEMANTIC_OFF}=false`, the two
  parts that embed each new prompt with MiniLM (about 4-5 ms of CPU per embedding here); the
  guard's heuristics and the exact cache run. The "default settings" rows turn both back on.
- {environment_note()} {pinning_note()} {key.note}
- Sequential: {_sent(seq)} requests on one kept-alive connection, in
  {options.scaled(4, 1)} rounds alternating which side goes first. The gateway's own overhead
  is the header it puts on each of those responses: its time before the response started,
  less its waits on the upstream.
- Throughput: {CONCURRENCY} closed-loop clients on kept-alive connections, {window} s per
  round and side, alternating.
- Stream: time from sending the request to the first `data:` event, {_sent(fb)} requests.
- CPU per request: utime + stime of the process from `/proc/PID/stat` over that phase's
  requests (10 ms ticks, so thousands of requests per phase).
- Fail-fast: a model whose two deployments point at closed ports; once their breakers are
  open, {len(res.fail_fast.ms)} sequential requests.
- Every request's message carries its own serial number, so no cache keyed on the text (guard
  verdicts, responses) serves a repeat. The request is deterministic (`temperature: 0`), so
  the response cache looks it up and stores the answer (`x-propylon-cache:
  {res.cache_status}`); hit latency is the cache family's.
{_defaults_note(res)}- Failed requests: {failed}.
"""
    return notes


if __name__ == "__main__":
    main_for("bench.gateway")
