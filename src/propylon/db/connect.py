"""Open the configured database, or an embedded one started in the data directory.

A configured URL that is not PostgreSQL's is refused at once; a database that does not answer
within ``connect_wait_s`` (3 s for a command run by hand, 30 s for a server, which may start
before its database) is a ``ServiceUnavailable`` naming it (host, port, name; never the
password) with PostgreSQL's own reason, not the pool's "timed out".
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import psycopg
import psycopg_pool
from psycopg.conninfo import conninfo_to_dict

from propylon.db.database import Database
from propylon.db.embedded import EmbeddedPostgres
from propylon.errors import ServiceUnavailable
from propylon.settings import Settings

COMMAND_CONNECT_WAIT_S = 3.0  # a command run by hand: say what is wrong soon
SERVER_CONNECT_WAIT_S = 30.0  # a server may start before its database is up


@asynccontextmanager
async def open_database(
    settings: Settings, *, connect_wait_s: float = COMMAND_CONNECT_WAIT_S
) -> AsyncIterator[Database]:
    """A pool on ``database_url``; without one, on PostgreSQL embedded in ``data_dir``."""
    async with AsyncExitStack() as stack:
        if settings.database_url is not None:
            url = settings.database_url.get_secret_value()
            where = place(url)
            if where is None:
                raise ServiceUnavailable(
                    "DATABASE_URL is not a PostgreSQL connection URL; write it as "
                    "postgresql://user:password@host:port/dbname."
                )
        else:
            embedded = EmbeddedPostgres(settings.data_dir)
            url = await embedded.start()
            stack.push_async_callback(embedded.stop)
            where = "the embedded PostgreSQL"
        database = Database(
            url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            acquire_timeout_s=settings.db_acquire_timeout_s,
        )
        try:
            await database.open(timeout=connect_wait_s)
        except psycopg_pool.PoolTimeout:
            await database.close()
            raise ServiceUnavailable(
                f"Cannot connect to the database at {where} (tried for {connect_wait_s:g} s): "
                f"{await _refusal(url)}"
            ) from None
        stack.push_async_callback(database.close)
        yield database


def place(url: str) -> str | None:
    """Where ``url`` points, for a person (``host:port/dbname``; never the password), or None
    when it is not a PostgreSQL connection URL."""
    try:
        info = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return None
    host = info.get("host") or "the local socket"
    return f"{host}:{info.get('port') or 5432}/{info.get('dbname') or info.get('user') or ''}"


async def _refusal(url: str) -> str:
    """Why a connection to ``url`` fails, in PostgreSQL's words (the pool says only that it
    timed out)."""
    try:
        conn = await psycopg.AsyncConnection.connect(url, connect_timeout=2)
    except psycopg.Error as exc:
        return " ".join(str(exc).split()) or type(exc).__name__
    await conn.close()
    return "it answers now, but did not while the pool waited"
