"""Cold start: from `propylon serve` being spawned to its first `/readyz` 200, and RSS idle.

Three ways to start, each a fresh process on the gateway core, timed from just before the
spawn to the first 200 (polled every 10 ms):

- **local models, DATABASE_URL**: `config/local.yaml` (the offline embedder and the
  extractive chat model load at start) against a running, already migrated PostgreSQL;
- **local models, embedded PostgreSQL**: the same with `--data-dir` on an initialised but
  stopped cluster, so `serve` also starts PostgreSQL — what a second `make run` does;
- **no local models, DATABASE_URL**: one remote deployment (never called), to show what the
  local models add.

The baseline is the bare interpreter (`python -c pass`) and `import propylon.app`, timed the
same way. RSS is read when ready plus one second, and again after a few local embedding and
chat requests (the first inference grows the model's buffers).

Run alone: ``python -m bench.cold_start [--quick] [--output docs/benchmarks.md]``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import yaml

from bench import load
from bench.document import stamp
from bench.keys import BenchKey, bench_key
from bench.processes import (
    GATEWAY_CORE,
    SINGLE_NODE,
    embedded_database,
    free_port,
    gateway,
    pin_self,
    pinning_note,
    propylon,
    rss_mb,
    spawn,
    wait_ready,
)
from bench.suite import Options, Section, main_for
from propylon import __version__
from propylon.db.embedded import EmbeddedPostgres

CHECKOUT = Path(__file__).resolve().parents[1]
LOCAL_CONFIG = CHECKOUT / "config" / "local.yaml"
GOAL_START_S = 3.0
GOAL_RSS_MB = 250.0


@dataclass(slots=True)
class Starts:
    """Seconds to ready over several starts, and RSS of each."""

    seconds: list[float] = field(default_factory=list)
    rss_idle_mb: list[float] = field(default_factory=list)
    rss_used_mb: list[float] = field(default_factory=list)
    already_running: int = 0  # embedded starts that found PostgreSQL still running


async def _start_once(
    args: Sequence[str],
    env: Mapping[str, str | None],
    log: Path,
    key: BenchKey | None,
    out: Starts,
) -> None:
    port = free_port()
    started = time.perf_counter()
    async with spawn([*args, "--port", str(port)], log=log, core=GATEWAY_CORE, env=env) as proc:
        url = f"http://127.0.0.1:{port}"
        await wait_ready(f"{url}/readyz", proc, timeout_s=120)
        out.seconds.append(time.perf_counter() - started)
        await asyncio.sleep(1.0)
        out.rss_idle_mb.append(rss_mb(proc.pid))
        if key is not None:
            await _use_local_models(url, key)
            out.rss_used_mb.append(rss_mb(proc.pid))


async def _use_local_models(url: str, key: BenchKey) -> None:
    """A few embeddings (one text, then a batch of 16) and extractive chat answers."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key.value}"}
    text = "Propylon relays requests to language models and records what happened."
    bodies = [
        ("embeddings", {"model": "local/all-MiniLM-L6-v2", "input": text}),
        ("embeddings", {"model": "local/all-MiniLM-L6-v2", "input": [text] * 16}),
        (
            "chat/completions",
            {
                "model": "local/extractive",
                "messages": [
                    {"role": "system", "content": f"Context: {text} It runs offline."},
                    {"role": "user", "content": "What does Propylon do?"},
                ],
            },
        ),
    ]
    async with load.client(1) as http:
        for _ in range(5):
            for path, body in bodies:
                data = orjson.dumps(body)
                async with http.post(f"{url}/v1/{path}", data=data, headers=headers) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"local {path} answered {resp.status}")


async def _time_process(args: Sequence[str], runs: int) -> list[float]:
    """Seconds from spawn to exit of a short command, on the gateway core."""
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


def _remote_config(workdir: Path) -> Path:
    path = workdir / "remote.yaml"
    deployment = {"provider": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1"}
    path.write_text(yaml.safe_dump({"models": [{"name": "remote", "deployments": [deployment]}]}))
    return path


async def run(options: Options) -> Section:
    pin_self()
    runs = options.scaled(3, 1)
    workdir = options.workdir
    serve_local = propylon("serve", "--config", str(LOCAL_CONFIG))
    async with embedded_database(options) as database_url:
        env = {"DATABASE_URL": database_url, **SINGLE_NODE}
        # A first start migrates the database, makes the key, and warms the OS file cache.
        remote_config = _remote_config(workdir)
        async with gateway(workdir, remote_config, database_url, name="cold-setup") as (url, _):
            key = await bench_key(url)
        with_url, remote = Starts(), Starts()
        for i in range(runs):
            await _start_once(serve_local, env, workdir / f"cold-local-{i}.log", key, with_url)
            remote_args = propylon("serve", "--config", str(remote_config))
            await _start_once(remote_args, env, workdir / f"cold-remote-{i}.log", None, remote)

    # `make run` a second time: serve starts the embedded PostgreSQL itself.
    data_dir = workdir / "serve-data"
    embedded = Starts()
    pgdata = data_dir / "pg"
    no_url = {"DATABASE_URL": None, "PROPYLON_DATABASE_URL": None, **SINGLE_NODE}
    serve_embedded = [*serve_local, "--data-dir", str(data_dir)]
    await _start_once(serve_embedded, no_url, workdir / "cold-embedded-init.log", None, Starts())
    for i in range(runs):
        log = workdir / f"cold-embedded-{i}.log"
        # pgserver stops the cluster when its last user exits; if not, this start attaches.
        embedded.already_running += (pgdata / "postmaster.pid").exists()
        await _start_once(serve_embedded, no_url, log, None, embedded)

    await _stop_leftover_cluster(data_dir)

    interpreter = await _time_process([sys.executable, "-c", "pass"], runs)
    imports = await _time_process([sys.executable, "-c", "import propylon.app"], runs)
    return Section(
        "cold_start", render(options, with_url, embedded, remote, interpreter, imports, key)
    )


def _s(values: list[float]) -> str:
    return f"{load.median(values):.2f} s" if values else "–"


def _range(values: list[float]) -> str:
    return f"{min(values):.2f}–{max(values):.2f} s" if values else "–"


def render(
    options: Options,
    with_url: Starts,
    embedded: Starts,
    remote: Starts,
    interpreter: list[float],
    imports: list[float],
    key: BenchKey,
) -> str:
    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    start_ok = load.median(with_url.seconds) <= GOAL_START_S
    embedded_ok = load.median(embedded.seconds) <= GOAL_START_S
    rss_idle = load.median(with_url.rss_idle_mb)
    rss_used = load.median(with_url.rss_used_mb)
    rows = [
        (
            "local models, DATABASE_URL (migrated)",
            _s(with_url.seconds),
            _range(with_url.seconds),
            f"≤ {GOAL_START_S:.0f} s",
            verdict(start_ok),
        ),
        (
            "local models, embedded PostgreSQL (`--data-dir`, stopped)",
            _s(embedded.seconds),
            _range(embedded.seconds),
            f"≤ {GOAL_START_S:.0f} s",
            verdict(embedded_ok),
        ),
        (
            "no local models, DATABASE_URL",
            _s(remote.seconds),
            _range(remote.seconds),
            "(context)",
            "",
        ),
        ("baseline: `python -c 'import propylon.app'`", _s(imports), _range(imports), "", ""),
        ("baseline: `python -c pass`", _s(interpreter), _range(interpreter), "", ""),
    ]
    table = [
        "| start to `/readyz` 200 | median | range | goal | |",
        "|---|---:|---:|---|---|",
        *("| " + " | ".join(row) + " |" for row in rows),
    ]
    rss_rows = [
        (
            "local models: idle (ready + 1 s)",
            f"{rss_idle:.0f} MB",
            f"≤ {GOAL_RSS_MB:.0f} MB",
            verdict(rss_idle <= GOAL_RSS_MB),
        ),
        ("local models: after 5 × (1 + 16 embeddings, 1 chat)", f"{rss_used:.0f} MB", "", ""),
        ("local models, embedded PostgreSQL: idle", _mb(embedded.rss_idle_mb), "", ""),
        ("no local models: idle", _mb(remote.rss_idle_mb), "", ""),
    ]
    rss_table = [
        "| RSS of the `serve` process | median | goal | |",
        "|---|---:|---|---|",
        *("| " + " | ".join(row) + " |" for row in rss_rows),
    ]
    quick = " **Quick run: too short for the numbers to mean anything.**" if options.quick else ""
    return f"""\
## Cold start and memory

{stamp(options.command)}{quick}

{chr(10).join(table)}

{chr(10).join(rss_table)}

How: Propylon {__version__}; {options.scaled(3, 1)} starts of each kind, timed from just before
the process is spawned to the first `/readyz` 200 (polled every 10 ms), so the time includes
the interpreter, imports, loading the models, opening the pool and checking migrations.
The embedded PostgreSQL's RSS is its own processes' and not counted above. With `--data-dir`,
{embedded.already_running} of {len(embedded.seconds)} starts found PostgreSQL still running
(then `serve` attaches instead of starting it). The OS file cache is warm: a first start
migrates the database and creates the key. {pinning_note()}
{key.note}
"""


def _mb(values: list[float]) -> str:
    return f"{load.median(values):.0f} MB" if values else "–"


if __name__ == "__main__":
    main_for("bench.cold_start")
