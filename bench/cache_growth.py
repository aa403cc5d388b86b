"""The semantic cache as a scope grows: does throughput hold?

Behind the first stage, each replica searches a scope's static vectors in memory: every row up
to ``GRAPH_FROM`` (8,000; 4,000 in session 15) entries, then through the scope's HNSW graph
(``first_index.py``; until session 15 PostgreSQL searched a scope past 5,000 entries). One scope
reaches 8,000 entries after about 2.2 requests a second of new questions for an hour (entries
live an hour): many deployments' scopes are past it. This bench runs the **defaults** gateway (guard
classifier and semantic cache on) and the **hot path** (both off) on one embedded PostgreSQL
and a fake upstream answering in 100 ms, and sends 50 concurrent clients at each in turn, with
a window straight to the upstream between (the baseline), every request a new user message
(``fast_defaults.MESSAGES``, each with a serial appended), so every defaults request adds an
entry to its one scope. It reports, window by window, the entries in that scope at the end of
the defaults window, each gateway's requests per second as a share of the direct window's, and
the defaults gateway's CPU per request, and the CPU per request of the database's processes
in the defaults window.

Run alone: ``python -m bench.cache_growth [--quick] [--output docs/benchmarks.md]``.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass

import psycopg

from bench import load
from bench.document import stamp
from bench.fast_defaults import DEFAULTS, SLOW_UPSTREAM_MS, benign_messages, tenant_gateway
from bench.gateway import CONCURRENCY, HOT_PATH, set_upstream, write_config
from bench.processes import (
    CpuMeter,
    embedded_database,
    environment_note,
    fake_upstream,
    pin_self,
    pinning_note,
)
from bench.suite import Options, Section, main_for
from propylon.gateway.cache.first_index import GRAPH_FROM

WINDOWS = (8, 2)  # full run, --quick
WINDOW_S = (5, 1)


@dataclass(frozen=True, slots=True)
class Window:
    entries: int  # in the defaults gateway's scope, at the end of its window
    direct: float  # requests per second
    defaults: float
    hot: float
    defaults_cpu_ms: float
    database_cpu_ms: float  # the database's processes, in the defaults window


async def _entries(database_url: str) -> int:
    """Entries of the run's one scope (only the defaults gateway stores semantic entries)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT count(*) FROM cache_entries")
        row = await cursor.fetchone()
    return int(row[0]) if row else 0


async def run(options: Options) -> Section:
    pin_self()
    workdir = options.workdir
    seconds = options.scaled(*WINDOW_S)
    windows: list[Window] = []
    async with (
        embedded_database(options) as database_url,
        fake_upstream(workdir) as (upstream_url, _),
        AsyncExitStack() as stack,
    ):
        config = write_config(workdir, upstream_url)
        messages = benign_messages()
        gateways = [
            await tenant_gateway(
                stack, options, config, database_url, f"cache-growth-{i}", env, messages
            )
            for i, env in enumerate((DEFAULTS, dict(HOT_PATH)))
        ]
        direct = load.chat_target(upstream_url, "fake-gpt", deterministic=True)
        async with load.client(1) as one:
            # Each message once (what loads on first use is loaded before CPU is counted).
            for _, _, target in gateways:
                await load.sequential(one, target, options.scaled(len(messages), 5), max_s=60.0)
            await set_upstream(one, upstream_url, {"latency_ms": SLOW_UPSTREAM_MS})
        (_, proc, defaults), (_, _, hot) = gateways
        async with load.client(CONCURRENCY) as many:
            for _ in range(options.scaled(*WINDOWS)):
                base = await load.closed_loop(
                    many, direct, concurrency=CONCURRENCY, seconds=seconds
                )
                meter = await CpuMeter.start(proc.pid, database_url)
                served = await load.closed_loop(
                    many, defaults, concurrency=CONCURRENCY, seconds=seconds
                )
                cpu, database = meter.spent()
                entries = await _entries(database_url)
                other = await load.closed_loop(many, hot, concurrency=CONCURRENCY, seconds=seconds)
                windows.append(
                    Window(
                        entries,
                        base.per_second,
                        served.per_second,
                        other.per_second,
                        1000 * cpu / served.completed if served.completed else float("nan"),
                        1000 * database / served.completed if served.completed else float("nan"),
                    )
                )
    return Section("cache_growth", render(windows, options, seconds))


def render(windows: list[Window], options: Options, seconds: int) -> str:
    lines = [
        "## Semantic cache: throughput as a scope grows",
        "",
        f"{stamp(options.command)} {environment_note()} {pinning_note()} The defaults gateway "
        "and the hot path (guard classifier and semantic cache off) on one embedded "
        f"PostgreSQL; a fake upstream answering in {SLOW_UPSTREAM_MS:.0f} ms; {CONCURRENCY} "
        f"concurrent clients for {seconds} s at each in turn (direct, defaults, hot path), "
        "every request a new user message, so each defaults request adds an entry to its one "
        f"scope. Up to {GRAPH_FROM:,} entries the replica compares every row of the scope; "
        "past it, the scope's graph finds its nearest rows.",
        "",
        "| window | entries in the scope | direct, req/s | defaults, share of direct "
        "| hot path, share of direct | defaults, CPU / request "
        "| defaults, database CPU / request |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i, w in enumerate(windows, 1):
        lines.append(
            f"| {i} | {w.entries:,} | {w.direct:.0f} | {_percent(w.defaults, w.direct):.0f} % "
            f"| {_percent(w.hot, w.direct):.0f} % | {w.defaults_cpu_ms:.2f} ms "
            f"| {w.database_cpu_ms:.2f} ms |"
        )
    inside = [w for w in windows if w.entries <= GRAPH_FROM]
    past = [w for w in windows if w.entries > GRAPH_FROM]
    lines.append("")
    if inside and past:
        lines.append(
            f"- Defaults, mean share of direct: {_mean_share(inside):.0f} % in the windows that "
            f"ended within {GRAPH_FROM:,} entries, {_mean_share(past):.0f} % in those that ended "
            f"past it (lowest {min(_percent(w.defaults, w.direct) for w in past):.0f} %)."
        )
    else:
        lines.append(f"- No window on both sides of {GRAPH_FROM:,} entries (a --quick run).")
    lines.append("")
    return "\n".join(lines)


def _percent(value: float, direct: float) -> float:
    return 100 * value / direct if direct else float("nan")


def _mean_share(windows: list[Window]) -> float:
    return sum(_percent(w.defaults, w.direct) for w in windows) / len(windows)


if __name__ == "__main__":
    main_for("bench.cache_growth")
