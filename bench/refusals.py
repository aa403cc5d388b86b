"""What a refusal costs: new prompts to a model whose deployments are all down, next to an
authenticated refusal that stops earlier and the bare framework, in the same run.

One `propylon serve` with its default settings (the guard's classifier on: it embeds every new
prompt with MiniLM, so a refusal that reached it would cost milliseconds), a model whose two
deployments point at closed ports (their breakers opened first, with a long cooldown), and:

* **all deployments down**: a new prompt each time (a serial number in the text), 503;
* **baseline, unknown model**: the same body naming a model that does not exist, 404 — the
  same middleware, body parsing, key check and request log, refused by the limits layer;
* **floor, `GET /healthz`**: the framework and middleware alone;
* **100,000 messages**: a 3.9 MB body with more messages than the gateway takes, 400
  `array_above_max_length` (before issue 27 it cost 69 s of CPU and 2 GB; its goal: under
  100 ms, reading and parsing the body included). Fewer of them: each is ~4 MB.

Sequential requests in alternating rounds, so load on a shared machine falls on all kinds
alike. Reported: the gateway's own time (`x-propylon-overhead-ms`) and the client's, p50/p99,
and the gateway process's CPU per request. Issue 27's goals: under 2 ms p99 for the 503, under
100 ms for the 100,000 messages. `tests/integration/test_cheap_checks_first.py` tests the work
each refusal does (nothing embedded, nothing counted), not its time.

Run alone: ``python -m bench.refusals [--quick] [--output docs/benchmarks.md]``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import aiohttp
import orjson

from bench import load
from bench.document import stamp
from bench.gateway import write_config
from bench.load import Latencies, Target, percentile
from bench.processes import cpu_seconds, pin_self, served_on_fake_upstream
from bench.suite import Options, Section, main_for

GOAL_P99_MS = 2.0
GOAL_MANY_MS = 100.0
MANY = 100_000


@dataclass(slots=True)
class Kind:
    """One kind of request: its target and everything measured of it."""

    target: Target
    share: float = 1.0  # of each round's requests: a large body is sent fewer times
    latencies: Latencies = field(default_factory=Latencies)
    cpu_s: float = 0.0

    def count(self, n: int) -> int:
        return max(1, int(n * self.share))

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu_s * 1000.0 / max(1, len(self.latencies.ms))


async def run(options: Options) -> Section:
    pin_self()
    load_before = os.getloadavg()[0]
    async with served_on_fake_upstream(options, write_config, "refusals") as (url, proc, key):
        down = load.chat_target(url, "bench-down", key=key)
        down.expect = 503
        unknown = load.chat_target(url, "bench-no-such-model", key=key)
        unknown.expect = 404
        healthz = Target(f"{url}/healthz", b"")
        messages = [{"role": "user", "content": f"message {n}"} for n in range(MANY)]
        many = Target(
            down.url,
            orjson.dumps({"model": "bench-chat", "messages": messages}),
            down.headers,
            expect=400,
        )
        kinds = {
            "all deployments down (503)": Kind(down),
            "baseline: unknown model (404)": Kind(unknown),
            "floor: GET /healthz": Kind(healthz),
            "100,000 messages (400)": Kind(many, share=1 / 30),
        }
        async with load.client(1) as session:
            await open_breakers(session, down)
            small = [kind for kind in kinds.values() if kind.share == 1.0]
            large = [kind for kind in kinds.values() if kind.share < 1.0]
            rounds, n = options.scaled(10, 2), options.scaled(300, 20)
            # The small kinds alternate; the 4 MB bodies come after them, so the garbage they
            # leave does not weigh on the small kinds' figures.
            for group in (small, large):
                for kind in group:  # warm: connection, encodings, code paths
                    await timed(session, kind.target, kind.count(options.scaled(200, 10)))
                for _ in range(rounds):
                    for kind in group:
                        await measure(session, kind, n, proc.pid)
    return Section("refusals", render(kinds, options, load_before))


async def measure(session: aiohttp.ClientSession, kind: Kind, n: int, pid: int) -> None:
    """One block of ``kind``'s requests, timed, with the gateway's CPU over it."""
    cpu = cpu_seconds(pid)
    got = await timed(session, kind.target, kind.count(n))
    kind.cpu_s += cpu_seconds(pid) - cpu
    kind.latencies.ms += got.ms
    kind.latencies.overhead_ms += got.overhead_ms
    kind.latencies.errors += got.errors


async def open_breakers(session: aiohttp.ClientSession, down: Target) -> None:
    """Send to the dead model until its breakers are open (503 with ``Retry-After``)."""
    for _ in range(30):
        async with session.post(down.url, data=down.payload(), headers=down.headers) as resp:
            await resp.read()
            if resp.status == 503 and "retry-after" in resp.headers:
                return
    raise RuntimeError("the breakers of the dead model never opened")


async def timed(session: aiohttp.ClientSession, target: Target, n: int) -> Latencies:
    """``n`` sequential requests (GET without a body, else POST), each timed."""
    if target.body:
        return await load.sequential(session, target, n, max_s=60.0)
    out = Latencies()
    for _ in range(n):
        started = time.perf_counter()
        async with session.get(target.url) as resp:
            await resp.read()
            out.errors += resp.status != target.expect
            overhead = resp.headers.get(load.OVERHEAD_HEADER)
        out.ms.append((time.perf_counter() - started) * 1000)
        if overhead:
            out.overhead_ms.append(float(overhead))
    return out


def _ms(values: list[float], p: float) -> str:
    return f"{percentile(values, p):.2f} ms" if values else "–"


def render(kinds: dict[str, Kind], options: Options, load_before: float) -> str:
    rows = []
    for name, kind in kinds.items():
        lat = kind.latencies
        rows.append(
            f"| {name} | {_ms(lat.overhead_ms, 50)} | {_ms(lat.overhead_ms, 99)} "
            f"| {_ms(lat.ms, 50)} | {_ms(lat.ms, 99)} | {kind.cpu_ms_per_request:.3f} ms "
            f"| {len(lat.ms)} | {lat.errors} |"
        )
    down, base, _, many = kinds.values()
    many_p50 = percentile(many.latencies.overhead_ms, 50)
    many_verdict = "met" if many_p50 < GOAL_MANY_MS else "**not met**"
    p99 = percentile(down.latencies.overhead_ms, 99)
    base_p99 = percentile(base.latencies.overhead_ms, 99)
    verdict = "met" if p99 < GOAL_P99_MS else "**not met**"
    cpu_ratio = down.cpu_ms_per_request / max(base.cpu_ms_per_request, 1e-9)
    quick = " Quick run: numbers are not meaningful." if options.quick else ""
    table = "\n".join(rows)
    return f"""## Refusals: every deployment down

{stamp(options.command)} Load average at the start: {load_before:.2f}.{quick}

**Current:** a new prompt to a model whose deployments are all down is refused in
**{p99:.2f} ms p99** of the gateway's own time (goal < {GOAL_P99_MS:.0f} ms: {verdict}); the
authenticated 404 of an unknown model, measured alongside, takes {base_p99:.2f} ms p99; the 503
costs **{cpu_ratio:.2f} ×** the 404's CPU per request. A body of {MANY:,} messages
({len(many.target.body) / 1e6:.1f} MB) is refused with 400 `array_above_max_length` in
**{many_p50:.1f} ms p50** of the gateway's own time, receiving and parsing it included (goal
< {GOAL_MANY_MS:.0f} ms: {many_verdict}), for {many.cpu_ms_per_request:.1f} ms of the gateway's
CPU each.

| request | gateway p50 | gateway p99 | client p50 | client p99 | CPU/request | requests | errors |
|---|---|---|---|---|---|---|---|
{table}

Method: one `propylon serve` with its default settings (the guard's classifier on), pinned to
its own core where the machine has one; a model whose two deployments point at closed ports,
its breakers opened before measuring (cooldown 600 s). Sequential requests, one connection,
{options.scaled(10, 2)} rounds of {options.scaled(300, 20)} of each small kind in turn, every 503
with a prompt never sent before; then {options.scaled(10, 2)} blocks of
{many.count(options.scaled(300, 20))} bodies of 100,000 messages (after the small kinds, so the
garbage they leave does not weigh on those). "Gateway" is the server's own
`x-propylon-overhead-ms` (request received to response started: no client or network time);
CPU is the gateway process's
(`/proc/<pid>/stat`) over each block, divided by its requests. The order of checks that makes
the refusals cheap (shape and message count, keys and rate limits, context window, breakers, and
only then the guard's classifier) is tested, by the work done, in
`tests/integration/test_cheap_checks_first.py`.
"""


if __name__ == "__main__":
    main_for("bench.refusals")
