"""The exact ledger (issue 18): what two replicas spend on a budget under concurrency, and what
reserving then settling costs each request.

Two `propylon serve` processes share one PostgreSQL and one Redis (a fresh key prefix per run,
the limiter failing closed) in front of the shipped fake upstream. Keys are made through the
admin API, each in a tenant of its own.

* **Exactness**: for a key with a 300-token daily budget, one with a $0.30 budget and one with
  300 TPM, 50 concurrent chat requests (`max_tokens` 20) split across both replicas. Reported:
  admitted and refused, whether every refusal was a 429 with the clear error code
  (`insufficient_quota` for budgets, `rate_limit_exceeded` for TPM), and the tokens and dollars
  spent as the key's usage records them (`GET /admin/keys/<name>/usage`) against the budget.
* **Cost**: a key with a token budget, a dollar budget and a TPM limit (all far too large to
  refuse anything) against a key with no limits, on replica A: sequential requests and requests
  with 16 in flight, in alternating rounds. Reported: client latency p50/p99, the gateway's own
  time (`x-propylon-overhead-ms`) p50 and replica A's CPU per request (`/proc/<pid>/stat`), as
  ratios of the limited key to the unlimited one.

Run alone: ``python -m bench.ledger [--quick] [--output docs/benchmarks.md]``.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from bench.document import stamp
from bench.gateway import HOT_PATH
from bench.keys import ADMIN_KEY
from bench.load import OVERHEAD_HEADER, percentile
from bench.processes import (
    Proc,
    cpu_seconds,
    embedded_database,
    fake_upstream,
    gateway,
    pin_self,
    pinning_note,
)
from bench.suite import Options, Section, main_for

MODEL = "bench-chat"
PRICE = {"input": 1000.0, "output": 2000.0}
"""$1000 / $2000 per million tokens: a call of a few prompt tokens and 16 completion tokens
costs about $0.03, so $0.30 buys about ten."""
CONCURRENT = 50
MAX_TOKENS = 20
IN_FLIGHT = 16
HUGE = 10**12
BASELINE = "no limits"
KEYS: dict[str, dict[str, Any]] = {
    "budget ($ + tokens) + TPM": {
        "budget": {"period": "day", "tokens": HUGE, "cost_usd": float(HUGE)},
        "limits": {"tpm": HUGE},
    },
    "TPM only": {"limits": {"tpm": HUGE}},
    BASELINE: {},
}
"""The cost part's keys; the limits are far too large to refuse anything."""


@dataclass(frozen=True, slots=True)
class Case:
    """One exactness case: the key's policy and the error its refusals must carry."""

    name: str
    policy: dict[str, Any]
    error: str
    budget: str


CASES = (
    Case(
        "token budget 300/day",
        {"budget": {"period": "day", "tokens": 300}},
        "insufficient_quota",
        "300 tokens",
    ),
    Case(
        "dollar budget $0.30/day",
        {"budget": {"period": "day", "cost_usd": 0.3}},
        "insufficient_quota",
        "$0.30",
    ),
    Case("TPM 300", {"limits": {"tpm": 300}}, "rate_limit_exceeded", "300 + 5/s refill"),
)


@dataclass(slots=True)
class Exactness:
    case: Case
    admitted: int
    refused: int
    clear: int
    statuses: list[int]
    tokens: int
    cost_usd: float
    upstream_calls: int
    elapsed_s: float

    @property
    def allowed_tokens(self) -> float:
        if "tpm" in self.case.policy.get("limits", {}):
            return 300 + 5 * self.elapsed_s  # a rate: it refills 5 tokens a second
        return 300

    @property
    def within(self) -> bool:
        if "cost_usd" in self.case.policy.get("budget", {}):
            return self.cost_usd <= 0.3 + 1e-9
        return self.tokens <= self.allowed_tokens


@dataclass(slots=True)
class Timing:
    """Requests of one key in one mode, summed over rounds."""

    ms: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)
    cpu_s: float = 0.0
    errors: int = 0

    @property
    def cpu_ms(self) -> float:
        return self.cpu_s * 1000.0 / max(1, len(self.ms))


def write_config(workdir: Path, upstream: str) -> Path:
    config = {
        "models": [
            {
                "name": MODEL,
                "deployments": [
                    {"provider": "openai", "base_url": f"{upstream}/v1", "model": "fake-gpt"}
                ],
            }
        ],
        "observe": {"prices": {MODEL: PRICE, "fake-gpt": PRICE}},
    }
    path = workdir / "ledger.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@asynccontextmanager
async def replicas(options: Options) -> AsyncIterator[tuple[list[str], Proc, str]]:
    """Two ready gateways sharing the run's database and Redis (a fresh prefix); yields their
    URLs, replica A's process and the fake upstream's URL."""
    env: dict[str, str | None] = {
        **HOT_PATH,
        "REDIS_URL": os.environ.get("PROPYLON_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "PROPYLON_ACCESS__REDIS_PREFIX": f"bench-ledger:{uuid.uuid4().hex}:",
        "PROPYLON_ACCESS__REDIS_FAIL_OPEN": "false",
        "PROPYLON_ACCESS__REDIS_TIMEOUT_S": "10",
    }
    async with (
        embedded_database(options) as database_url,
        fake_upstream(options.workdir) as (upstream_url, _),
        AsyncExitStack() as stack,
    ):
        config = write_config(options.workdir, upstream_url)
        urls: list[str] = []
        procs: list[Proc] = []
        for name in ("ledger-a", "ledger-b"):
            url, proc = await stack.enter_async_context(
                gateway(options.workdir, config, database_url, name=name, env=env)
            )
            urls.append(url)
            procs.append(proc)
        yield urls, procs[0], upstream_url


async def create_key(
    http: aiohttp.ClientSession, url: str, policy: dict[str, Any]
) -> tuple[str, str]:
    """A key in a tenant of its own with ``policy``; returns its name and value."""
    name = f"ledger-{secrets.token_hex(4)}"
    body = {"tenant": name, "name": name, **policy}
    async with http.post(f"{url}/admin/keys", data=orjson.dumps(body), headers=_admin()) as resp:
        raw = await resp.read()
    if resp.status != 201:
        raise RuntimeError(f"POST /admin/keys answered {resp.status}: {raw[:500]!r}")
    return name, str(orjson.loads(raw)["key"])


def _admin() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}


def _body(n: int) -> bytes:
    return orjson.dumps(
        {
            "model": MODEL,
            "messages": [{"role": "user", "content": f"Say hello to request {n}."}],
            "max_tokens": MAX_TOKENS,
        }
    )


async def upstream_calls(http: aiohttp.ClientSession, upstream: str) -> int:
    async with http.get(f"{upstream}/_fake/stats") as resp:
        raw = orjson.loads(await resp.read())
    calls = raw.get("calls", {}) if isinstance(raw, dict) else {}
    return int(calls.get("/v1/chat/completions", 0)) if isinstance(calls, dict) else 0


async def exactness(
    http: aiohttp.ClientSession, urls: list[str], upstream: str, case: Case
) -> Exactness:
    name, key = await create_key(http, urls[0], case.policy)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    calls_before = await upstream_calls(http, upstream)

    async def call(i: int) -> tuple[int, str | None]:
        async with http.post(
            f"{urls[i % 2]}/v1/chat/completions", data=_body(i), headers=headers
        ) as resp:
            raw = await resp.read()
        if resp.status == 200:
            return 200, None
        try:
            code = orjson.loads(raw)["error"]["code"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            code = None
        return resp.status, code if isinstance(code, str) else None

    started = time.monotonic()
    replies = await asyncio.gather(*(call(i) for i in range(CONCURRENT)))
    elapsed = time.monotonic() - started
    usage: dict[str, Any] = {}
    for url in urls:  # each replica writes what it has counted before answering
        async with http.get(f"{url}/admin/keys/{name}/usage", headers=_admin()) as resp:
            usage = orjson.loads(await resp.read())
    days = usage.get("days") or [{}]
    today = days[-1]
    refused = [code for status, code in replies if status != 200]
    return Exactness(
        case=case,
        admitted=sum(status == 200 for status, _ in replies),
        refused=len(refused),
        clear=sum(
            status == 429 and code == case.error for status, code in replies if status != 200
        ),
        statuses=sorted({status for status, _ in replies}),
        tokens=int(today.get("prompt_tokens", 0)) + int(today.get("completion_tokens", 0)),
        cost_usd=float(today.get("cost_usd") or 0.0),
        upstream_calls=await upstream_calls(http, upstream) - calls_before,
        elapsed_s=elapsed,
    )


async def timed_round(
    http: aiohttp.ClientSession, url: str, key: str, proc: Proc, n: int, in_flight: int
) -> Timing:
    """``n`` requests with ``in_flight`` at a time (1: sequential), each timed."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    out = Timing()
    gate = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with gate:
            started = time.perf_counter()
            async with http.post(
                f"{url}/v1/chat/completions", data=_body(i), headers=headers
            ) as resp:
                await resp.read()
                overhead = resp.headers.get(OVERHEAD_HEADER)
            out.ms.append((time.perf_counter() - started) * 1000)
            out.errors += resp.status != 200
            if overhead:
                out.overhead_ms.append(float(overhead))

    cpu = cpu_seconds(proc.pid)
    await asyncio.gather(*(one(i) for i in range(n)))
    out.cpu_s = cpu_seconds(proc.pid) - cpu
    return out


def _merge(into: Timing, got: Timing) -> None:
    into.ms += got.ms
    into.overhead_ms += got.overhead_ms
    into.cpu_s += got.cpu_s
    into.errors += got.errors


async def run(options: Options) -> Section:
    pin_self()
    load_before = os.getloadavg()[0]
    rounds, n = options.scaled(8, 2), options.scaled(250, 10)
    modes = {"sequential": 1, f"{IN_FLIGHT} in flight": IN_FLIGHT}
    timings = {(mode, k): Timing() for mode in modes for k in KEYS}
    connector = aiohttp.TCPConnector(limit=CONCURRENT + 4)
    async with (
        replicas(options) as (urls, proc, upstream),
        aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http,
    ):
        results = [await exactness(http, urls, upstream, case) for case in CASES]
        values = {k: (await create_key(http, urls[0], policy))[1] for k, policy in KEYS.items()}
        for value in values.values():  # warm: connections, code paths, the keys' buckets
            await timed_round(http, urls[0], value, proc, n, IN_FLIGHT)
        for r in range(rounds):
            order = list(KEYS) if r % 2 == 0 else list(KEYS)[::-1]
            for mode, in_flight in modes.items():
                for k in order:
                    got = await timed_round(http, urls[0], values[k], proc, n, in_flight)
                    _merge(timings[(mode, k)], got)
    return Section("ledger", render(results, timings, modes, options, load_before, rounds, n))


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f} ×" if b > 0 else "–"


def render(
    results: list[Exactness],
    timings: dict[tuple[str, str], Timing],
    modes: dict[str, int],
    options: Options,
    load_before: float,
    rounds: int,
    n: int,
) -> str:
    exact_rows = "\n".join(
        f"| {r.case.name} | {r.admitted} | {r.refused} | {r.clear} of {r.refused} "
        f"(`{r.case.error}`) | {r.tokens} | ${r.cost_usd:.3f} | {r.case.budget} "
        f"| {'yes' if r.within else '**no**'} |"
        for r in results
    )
    cost_rows = []
    for mode in modes:
        base = timings[(mode, BASELINE)]
        for k in KEYS:
            t = timings[(mode, k)]
            p50, p99 = percentile(t.ms, 50), percentile(t.ms, 99)
            cost_rows.append(
                f"| {mode} | {k} | {t.cpu_ms:.3f} ms | {_ratio(t.cpu_ms, base.cpu_ms)} "
                f"| {p50:.2f} ms | {_ratio(p50, percentile(base.ms, 50))} "
                f"| {p99:.2f} ms | {_ratio(p99, percentile(base.ms, 99))} "
                f"| {percentile(t.overhead_ms, 50):.2f} ms | {len(t.ms)} | {t.errors} |"
            )
    all_within = all(r.within for r in results)
    all_clear = all(r.clear == r.refused for r in results)
    statuses = sorted({s for r in results for s in r.statuses})
    seq = next(iter(modes))
    full, tpm = list(KEYS)[:2]
    lim, unl, only = timings[(seq, full)], timings[(seq, BASELINE)], timings[(seq, tpm)]
    added = percentile(lim.ms, 50) - percentile(unl.ms, 50)
    par = list(modes)[1]
    par_lim, par_only, par_unl = (timings[(par, k)] for k in (full, tpm, BASELINE))
    token_case, dollar_case = results[0], results[1]
    quick = " Quick run: the cost numbers are not meaningful." if options.quick else ""
    hot_path = ", ".join(f"`{k}={v}`" for k, v in HOT_PATH.items())
    verdict = "**within**" if all_within else "**over**"
    refusals = "every" if all_clear else "**not every**"
    return f"""## The exact ledger: budgets across two replicas, and what reserving costs

{stamp(options.command)} Load average at the start: {load_before:.2f}.{quick}

**Current:** {CONCURRENT} concurrent requests through two replicas spent {verdict} every
budget (tokens, dollars, TPM), and {refusals} refusal carried its clear error code (statuses
seen: {", ".join(map(str, statuses))}). Sequentially, a key with a budget and a TPM limit costs
**{_ratio(lim.cpu_ms, unl.cpu_ms)}** the gateway CPU per request of a key without limits
({lim.cpu_ms:.2f} ms vs {unl.cpu_ms:.2f} ms) and adds {added:.2f} ms to the client's p50; a
TPM limit alone costs {_ratio(only.cpu_ms, unl.cpu_ms)}. With {IN_FLIGHT} in flight the
gateway's own p50 is {percentile(par_lim.overhead_ms, 50):.2f} ms with the budget and TPM,
{percentile(par_only.overhead_ms, 50):.2f} ms with TPM alone and
{percentile(par_unl.overhead_ms, 50):.2f} ms without limits. **Before** (issue 18's figure, kept
as history: budgets were checked, not reserved, and that path no longer exists): 20 of 20
concurrent requests admitted on a 300-token budget, 1,060 tokens spent.

Method: two `propylon serve` processes ({hot_path}) sharing the run's PostgreSQL and Redis (a
fresh key prefix, `redis_fail_open=false`), both on the gateway core; the fake upstream with
the load generator. {pinning_note()} Prices $1000 / $2000 per million tokens (a few cents a
call). Each key is created through `POST /admin/keys` in a tenant of its own.

*Exactness:* per case a new key, then {CONCURRENT} requests at once (`max_tokens`
{MAX_TOKENS}, even ones to replica A, odd ones to B); "spent" is the key's usage for the day as
`GET /admin/keys/<name>/usage` reports it after both replicas flushed.

| key | admitted | refused | clear refusals | tokens spent | dollars spent | budget | within |
|---|---|---|---|---|---|---|---|
{exact_rows}

*Cost:* three keys on replica A, whose limits ({HUGE:.0e}) never refuse anything: a token and
dollar budget plus a TPM limit, a TPM limit alone, and no limits (the baseline). {rounds}
rounds of {n} requests per key and mode (one at a time, then {IN_FLIGHT} in flight), the keys'
order reversed every other round, after one warm-up round each. CPU is replica A's
(`/proc/<pid>/stat`) over each block divided by its requests; p50/p99 are the client's;
"gateway p50" is the server's own `{OVERHEAD_HEADER}`; ratios are to the no-limits key in the
same mode.

| mode | key | CPU/req | ratio | p50 | ratio | p99 | ratio | gateway p50 | n | errors |
|---|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(cost_rows)}

Notes: the TPM case's allowance is a rate (300 a minute refills 5 tokens a second), so it may
spend 300 plus 5 for each second the run took. A key without reservation semantics no longer
exists, so the "before" figure is the issue's, not measured here. Admission reserves an upper
estimate (the prompt's counted tokens + `max_tokens`), so the last reservations that do not fit
are refused although the call would have fitted: {300 - token_case.tokens} of the 300 tokens
and ${max(0.0, 0.3 - dollar_case.cost_usd):.3f} of the $0.30 were left unspent here — exact
means never over, not always full. What a limited key adds: it
counts its prompt's tokens, reserves and then settles in one Redis script each (two round
trips), and a key with a budget also adds its budget windows to those two scripts and reads
its recorded spend from PostgreSQL at every admission (the floor for a window Redis has
forgotten) — together the difference between the first two keys' rows, not measured apart.
A key without limits touches neither. Both replicas share one core with the
gateway under test; the ratios, measured in alternating rounds, are the result, not the
absolute figures.
"""


if __name__ == "__main__":
    main_for("bench.ledger")
