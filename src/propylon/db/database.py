"""The async connection pool every part of Propylon shares."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool


class Database:
    """A psycopg 3 pool. Connections hand out rows as dicts and autocommit off."""

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self.url = url
        self._pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={"row_factory": dict_row},
            connection_class=AsyncConnection[DictRow],
            name="propylon",
        )

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

    async def ping(self, timeout: float = 2.0) -> bool:
        """True when a query round-trips within ``timeout`` seconds."""
        try:
            async with self._pool.connection(timeout=timeout) as conn:
                await conn.execute("SELECT 1")
            return True
        except Exception:
            return False
