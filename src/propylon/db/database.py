"""The async connection pool every part of Propylon shares.

Built to fail fast and recover fast when the database goes away: a connection is waited for
at most ``acquire_timeout_s`` (then the HTTP layer answers 503 with ``Retry-After``, see
``unavailable``); every connection is checked when it is handed out (unless it came back
less than ``ALIVE_BYPASS_S`` ago), so the dead ones a restarted server leaves in the pool are
discarded instead of failing a request; and the pool
gives up reconnecting after ``_RECONNECT_S`` and starts afresh on the next demand, so its
back-off (doubling from 1 s) never grows past a few seconds: once the database is back, the
next request reconnects.

A connection handed back still in pipeline mode is discarded (``_handed_back``): psycopg 3.3's
``executemany`` enters pipeline mode and may then yield to a busy event loop, and a task
cancelled at that point (a request's timeout under load) leaves the connection in it. Kept,
every later COPY on it failed (the request log's and the spans' writes) and so did every
``autocommit()`` (tests/integration/test_database.py).
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from weakref import WeakKeyDictionary

import psycopg
from psycopg import AsyncConnection, pq
from psycopg.rows import DictRow, dict_row
from psycopg.types.json import set_json_loads
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from propylon.db.json_loads import loads
from propylon.errors import InvalidRequest, ServiceUnavailable

log = logging.getLogger(__name__)

_RECONNECT_S = 3.0
_RETRY_AFTER_S = 2.0

# Session defaults every pooled connection starts with. A filtered HNSW scan (a semantic-cache
# search confined to its tenant and scope) must keep walking the graph until it has found
# rows that pass the filter: pgvector >= 0.8 does that with ``iterative_scan``; older ones
# ignore the setting. Set once per connection here, not per query: a search needs no
# transaction of its own and runs as one statement. Queries wanting another order (RAG's
# ``relaxed_order``) set it locally. ``ef_search`` 120 (pgvector's default: 40): the semantic
# cache's first-stage index is built light, since every entry is inserted into it and it is
# searched only as a fallback (migration 0028), and its searches buy the recall back; RAG
# sets its own for each search (at least 40, its limit).
EF_SEARCH = 120
SESSION_DEFAULTS = (
    "SELECT set_config('hnsw.iterative_scan', 'strict_order', false), "
    f"set_config('hnsw.ef_search', '{EF_SEARCH}', false)"
)


# A connection handed back to the pool less than this long ago is handed out again without the
# check's round trip (HikariCP's "alive bypass window", 500 ms by default there too). A pooled
# ``SELECT 1`` cost 212 µs of this process's CPU with the check and 100 µs without, in a loop;
# in ``propylon serve``, where each request reads the database (the semantic cache without its
# index), the check cost 0.4-0.9 ms of CPU a request, sequentially (docs/benchmarks.md, "Fast
# defaults: session 13"). A connection that died inside the window fails its query instead,
# which callers already turn into a 503 or a cache miss (``unavailable``); the pool then
# discards it.
ALIVE_BYPASS_S = 0.5


class Database:
    """A psycopg 3 pool. Connections hand out rows as dicts and autocommit off."""

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        acquire_timeout_s: float = 30.0,
        alive_bypass_s: float = ALIVE_BYPASS_S,
    ) -> None:
        self.url = url
        self._alive_bypass_s = alive_bypass_s
        # When each pooled connection was last handed back in working order.
        self._returned: WeakKeyDictionary[AsyncConnection[DictRow], float] = WeakKeyDictionary()
        self.checks = 0  # connections checked with a round trip before being handed out
        self.discarded_in_pipeline = 0  # handed back in pipeline mode, so closed (see above)
        self._pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={"row_factory": dict_row},
            connection_class=AsyncConnection[DictRow],
            configure=_configure,
            check=self._check,
            reset=self._handed_back,
            timeout=acquire_timeout_s,
            reconnect_timeout=_RECONNECT_S,
            reconnect_failed=_reconnect_failed,
            name="propylon",
        )

    async def _handed_back(self, conn: AsyncConnection[DictRow]) -> None:
        """The pool's reset of a connection handed back (after its rollback, if it needed one);
        raising makes the pool close it."""
        if conn.pgconn.pipeline_status != pq.PipelineStatus.OFF:
            self.discarded_in_pipeline += 1
            raise psycopg.InterfaceError(
                "handed back in pipeline mode (an executemany cancelled as it began): discarded"
            )
        self._returned[conn] = time.monotonic()

    async def _check(self, conn: AsyncConnection[DictRow]) -> None:
        """The pool's check of a connection it hands out: a round trip, unless the connection
        came back in working order less than ``alive_bypass_s`` ago."""
        returned = self._returned.get(conn)
        if returned is not None and time.monotonic() - returned < self._alive_bypass_s:
            return
        self.checks += 1
        await AsyncConnectionPool.check_connection(conn)

    async def open(self, *, wait: bool = True, timeout: float = 30.0) -> None:
        await self._pool.open(wait=wait, timeout=timeout)

    async def close(self) -> None:
        await self._pool.close()

    @asynccontextmanager
    async def connection(
        self, timeout: float | None = None
    ) -> AsyncIterator[AsyncConnection[DictRow]]:
        """A pooled connection inside a transaction committed on success."""
        async with self._pool.connection(timeout=timeout) as conn:
            yield conn

    @asynccontextmanager
    async def autocommit(
        self, timeout: float | None = None
    ) -> AsyncIterator[AsyncConnection[DictRow]]:
        """A pooled connection in autocommit mode: each statement is its own transaction, so
        a lone read costs one round trip instead of three (``BEGIN``, the query, ``COMMIT``).
        """
        async with self._pool.connection(timeout=timeout) as conn:
            await conn.set_autocommit(True)
            try:
                yield conn
            finally:
                try:
                    await conn.set_autocommit(False)
                except Exception:
                    # Never hand an autocommit connection back to callers expecting a
                    # transaction: a closed connection is discarded by the pool.
                    await conn.close()

    async def ping(self, timeout: float = 2.0) -> bool:
        """True when a query round-trips within ``timeout`` seconds."""
        try:
            async with self._pool.connection(timeout=timeout) as conn:
                await conn.execute("SELECT 1")
            return True
        except Exception:
            return False


UNAVAILABLE: tuple[type[Exception], ...] = (PoolTimeout, psycopg.OperationalError)
"""The driver's errors that say the database cannot be reached (``unavailable``)."""


def unavailable(exc: BaseException) -> ServiceUnavailable | None:
    """``exc`` as the 503 a client should see when it says the database cannot be reached (no
    pooled connection in time, a connection lost), else ``None``. A program limit (SQLSTATE
    class 54, an ``OperationalError`` too: a value too large to index, say) is the request's
    data, not an outage: ``beyond_limits``."""
    if isinstance(exc, UNAVAILABLE) and beyond_limits(exc) is None:
        return ServiceUnavailable(
            "The database is unavailable; try again shortly.",
            code="database_unavailable",
            retry_after=_RETRY_AFTER_S,
        )
    return None


def beyond_limits(exc: BaseException) -> InvalidRequest | None:
    """``exc`` as the 400 a client should see when the database refused a value of the request
    for its size (SQLSTATE class 54: a value too large to index, too many arguments), else
    ``None``. Retrying would fail the same way, so it is not a 503."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str) and sqlstate.startswith("54"):
        return InvalidRequest(
            "A value of the request is too large for the database to store or index; shorten it.",
            code="value_too_large",
        )
    return None


async def _reconnect_failed(pool: AsyncConnectionPool[AsyncConnection[DictRow]]) -> None:
    log.warning("database unreachable; reconnecting on the next request")


async def _configure(conn: AsyncConnection[DictRow]) -> None:
    """Read ``json``/``jsonb`` with ``loads`` on a new connection, apply
    ``SESSION_DEFAULTS``, and leave it idle."""
    set_json_loads(loads, conn)  # a stored number of 2^64 or more comes back as a float
    try:
        await conn.execute(SESSION_DEFAULTS)
        await conn.commit()
    except psycopg.Error as exc:
        # A server whose pgvector reserves the ``hnsw`` prefix without this setting (< 0.8,
        # loaded at start): searches work, only a filtered one may return fewer neighbours.
        await conn.rollback()
        log.debug("session defaults not applied", extra={"error": repr(exc)})
