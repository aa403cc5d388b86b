"""Real processes for benchmarks: the database, the fake upstream, `propylon serve`.

Fairness on a small machine: the gateway gets core 0 to itself; the load generator (this
process) and the fake upstream share core 1 — the same core in the direct baseline and through
the gateway, so the baseline is not flattered by a core the gateway run lacks. With fewer than
two cores nothing is pinned and the report says so.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import psycopg
from psycopg.conninfo import make_conninfo

from bench.keys import ADMIN_KEY
from bench.suite import Options
from propylon.db.embedded import EmbeddedPostgres

SINGLE_NODE: dict[str, str | None] = {"REDIS_URL": None, "PROPYLON_REDIS_URL": None}
"""One node: limits in memory, whatever Redis the calling shell points at."""

GATEWAY_CORE = 0
LOAD_CORE = 1
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@functools.cache
def can_pin() -> bool:
    """Both cores are ours to use (checked once, before this process pins itself)."""
    usable = {GATEWAY_CORE, LOAD_CORE} <= os.sched_getaffinity(0)
    return usable and shutil.which("taskset") is not None


def pinning_note() -> str:
    if can_pin():
        return (
            f"Processes pinned: gateway on core {GATEWAY_CORE}; load generator and fake "
            f"upstream on core {LOAD_CORE} (in the direct baseline too)."
        )
    return "Processes not pinned (fewer than two cores or no `taskset`)."


def environment_note() -> str:
    """The settings this shell passes to the processes (they change what is measured)."""
    secret = {"PROPYLON_ADMIN_KEY", "PROPYLON_BENCH_API_KEY", "PROPYLON_BENCH_DATABASE_URL"}
    names = sorted(
        n for n in os.environ if (n.startswith("PROPYLON_") or n == "PGOPTIONS") and n not in secret
    )
    if not names:
        return "No `PROPYLON_*` variable set in the shell."
    return "Set in the shell: " + ", ".join(f"`{n}={os.environ[n]}`" for n in names) + "."


def pin_self() -> None:
    """Put the load generator on its core (threads started later inherit it)."""
    if can_pin():
        os.sched_setaffinity(0, {LOAD_CORE})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads, from ``/proc/PID/stat``."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # utime, stime (fields 14, 15)


async def database_pids(database_url: str) -> list[int]:
    """The processes of the PostgreSQL at ``database_url`` (its backends and background
    workers, this connection's own left out) when it runs on this machine; [] otherwise."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        if conn.info.host not in (
            "127.0.0.1",
            "::1",
            "localhost",
        ) and not conn.info.host.startswith("/"):
            return []  # another machine's process ids
        cursor = await conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE pid <> pg_backend_pid() ORDER BY pid"
        )
        return [int(row[0]) for row in await cursor.fetchall()]


def _cpu_of(pids: Sequence[int]) -> dict[int, float]:
    """``cpu_seconds`` of each of ``pids`` still running (an ended one is left out)."""
    out: dict[int, float] = {}
    for pid in pids:
        try:
            out[pid] = cpu_seconds(pid)
        except (OSError, ValueError):
            continue
    return out


@dataclass(frozen=True, slots=True)
class CpuMeter:
    """CPU seconds a process and the database's processes spend from ``start`` on."""

    pid: int
    database: dict[int, float]  # the database's processes at the start: pid -> CPU seconds
    process: float

    @classmethod
    async def start(cls, pid: int, database_url: str) -> CpuMeter:
        database = _cpu_of(await database_pids(database_url))
        return cls(pid, database, cpu_seconds(pid))

    def spent(self) -> tuple[float, float]:
        """(the process's, the database's processes') CPU seconds since ``start``; of the
        database's, only the processes running at both ends count."""
        after = _cpu_of(list(self.database))
        database = sum(after[pid] - self.database[pid] for pid in after)
        return cpu_seconds(self.pid) - self.process, database


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (``/proc/PID/statm``)."""
    resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return resident * _PAGE / 2**20


@dataclass(slots=True)
class Proc:
    """A started process and its log file."""

    process: asyncio.subprocess.Process
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@asynccontextmanager
async def spawn(
    args: Sequence[str],
    *,
    log: Path,
    core: int | None,
    env: Mapping[str, str | None] | None = None,
) -> AsyncIterator[Proc]:
    """Run ``args`` (pinned to ``core`` when pinning is possible); SIGTERM, then kill, at exit.

    ``env`` is laid over this process's environment; a None value removes the variable.
    """
    prefix = ["taskset", "-c", str(core)] if core is not None and can_pin() else []
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            *prefix,
            *args,
            env=environment(env),
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            stdin=asyncio.subprocess.DEVNULL,
        )
        try:
            yield Proc(process, log)
        finally:
            await stop(process)


def environment(changes: Mapping[str, str | None] | None) -> dict[str, str]:
    """This process's environment with ``changes`` laid over it (None removes a variable)."""
    out = dict(os.environ)
    for name, value in (changes or {}).items():
        if value is None:
            out.pop(name, None)
        else:
            out[name] = value
    return out


async def stop(process: asyncio.subprocess.Process, grace_s: float = 15.0) -> None:
    if process.returncode is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(process.wait(), grace_s)
    except TimeoutError:
        process.kill()
        await process.wait()


def propylon(*args: str) -> list[str]:
    """``python -m propylon ARGS…`` with this interpreter (taskset execs it in place)."""
    return [sys.executable, "-m", "propylon", *args]


async def wait_ready(
    url: str, proc: Proc, *, timeout_s: float = 60.0, interval_s: float = 0.01
) -> float:
    """Poll ``url`` until 200; return seconds waited. Raises with the log tail on failure."""
    started = time.perf_counter()
    deadline = started + timeout_s
    timeout = aiohttp.ClientTimeout(total=2.0)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        while True:
            if proc.process.returncode is not None:
                raise RuntimeError(f"process exited ({proc.process.returncode}):\n{proc.tail()}")
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return time.perf_counter() - started
            except (aiohttp.ClientError, TimeoutError):
                pass
            if time.perf_counter() > deadline:
                raise TimeoutError(f"{url} not ready within {timeout_s} s:\n{proc.tail()}")
            await asyncio.sleep(interval_s)


@asynccontextmanager
async def embedded_database(options: Options) -> AsyncIterator[str]:
    """The run's database when it has one; else an embedded PostgreSQL in ``--data-dir`` (or a
    temporary directory), stopped at exit. Yields its URL."""
    if options.database_url is not None:
        yield options.database_url
        return
    server = EmbeddedPostgres(options.data_dir or (options.workdir / "data"))
    url = await server.start()
    try:
        yield url
    finally:
        await server.stop()


@asynccontextmanager
async def scratch_database(url: str, keep: str | None = None, *, prefix: str) -> AsyncIterator[str]:
    """A database of its own on ``url``'s server, dropped afterwards; or, with ``keep``, the
    database of that name, created if missing and kept, so that rows generated once serve
    repeated query runs (10 million rows take long to generate on a shared machine)."""
    name = keep or f"{prefix}_{os.getpid()}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        exists = await (
            await conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
        ).fetchone()
        if keep is None or not exists:
            await conn.execute(f"DROP DATABASE IF EXISTS {name}")
            await conn.execute(f"CREATE DATABASE {name}")
    try:
        yield make_conninfo(url, dbname=name)
    finally:
        if keep is None:
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
                await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@asynccontextmanager
async def fake_upstream(workdir: Path, *extra: str) -> AsyncIterator[tuple[str, Proc]]:
    """``propylon fake-upstream`` on the load core; yields its root URL and the process."""
    port = free_port()
    args = propylon("fake-upstream", "--port", str(port), *extra)
    async with spawn(args, log=workdir / f"fake-upstream-{port}.log", core=LOAD_CORE) as proc:
        url = f"http://127.0.0.1:{port}"
        await wait_ready(f"{url}/_fake/behaviour", proc, interval_s=0.05)
        yield url, proc


@asynccontextmanager
async def gateway(
    workdir: Path,
    config: Path,
    database_url: str,
    *,
    name: str = "gateway",
    env: Mapping[str, str | None] | None = None,
) -> AsyncIterator[tuple[str, Proc]]:
    """``propylon serve`` on the gateway core, ready; yields its root URL and the process.
    ``env`` is laid over this process's environment (None removes a variable)."""
    port = free_port()
    args = propylon("serve", "--config", str(config), "--port", str(port))
    env = {
        "DATABASE_URL": database_url,
        "PROPYLON_ADMIN_KEY": ADMIN_KEY,
        **SINGLE_NODE,
        **(env or {}),
    }
    async with spawn(args, log=workdir / f"{name}-{port}.log", core=GATEWAY_CORE, env=env) as proc:
        url = f"http://127.0.0.1:{port}"
        await wait_ready(f"{url}/readyz", proc)
        yield url, proc


@asynccontextmanager
async def served_on_fake_upstream(
    options: Options, write_config: Callable[[Path, str], Path], name: str
) -> AsyncIterator[tuple[str, Proc, str]]:
    """The run's database, a fake upstream and a ready `propylon serve` with the config
    ``write_config(workdir, upstream_url)`` writes; yields its root URL, its process and an
    API key of tenant ``bench``."""
    from bench.keys import bench_key

    async with (
        embedded_database(options) as database_url,
        fake_upstream(options.workdir) as (upstream_url, _),
    ):
        config = write_config(options.workdir, upstream_url)
        async with gateway(options.workdir, config, database_url, name=name) as (url, proc):
            yield url, proc, (await bench_key(url)).value
