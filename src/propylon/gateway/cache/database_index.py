"""The first stage's HNSW index in PostgreSQL, built only once some replica needs it.

Each replica searches the static vectors of the semantic cache in memory (``first_index.py``).
The database searches them only where that index cannot: a replica with no index
(``cache.semantic_index_entries: 0``) or one whose index went over its size. An HNSW index
kept for that case costs every entry an insert into it, about 0.3 ms of PostgreSQL a request
that stores an answer (migration 0028), which most deployments never use. So migration 0029
dropped it, and the first replica whose search falls to the database builds it here:
``CREATE INDEX CONCURRENTLY`` (writes go on meanwhile), in the background, under an advisory
lock so that replicas build it once (the others ask for the lock again until it is free, then
find the index valid: blocking on it would hold a snapshot the build waits for, a deadlock),
after dropping an invalid one a failed build left. Until it is valid the database's search
scans the scope's rows (the scope's B-tree index finds them). Once built it stays: from then
on the database keeps it, as it did before migration 0029. Searching before a replica's first
full read of the table needs no index (it lasts seconds).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from propylon.gateway.cache.queries import queries

log = logging.getLogger(__name__)

RETRY_S = 60.0  # a failed build is tried again by a fallback search this much later
LOCK_POLL_S = 0.1  # while another replica builds: asked again after this, doubling
MAX_LOCK_POLL_S = 2.0


class DatabaseIndex:
    """Builds the first stage's database index on demand (``wanted``), once per process."""

    def __init__(self, database: Any, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._db = database
        self._monotonic = monotonic
        self._task: asyncio.Task[None] | None = None
        self._next_try = 0.0
        self.ready = False  # built (by this process or found valid)

    def wanted(self) -> None:
        """A search fell to the database: build the index in the background unless it is
        built, being built, or a failed build is not due for another try."""
        if self.ready or (self._task is not None and not self._task.done()):
            return
        if self._monotonic() < self._next_try:
            return
        self._task = asyncio.create_task(self._ensure(), name="semantic_cache_database_index")

    async def built(self) -> bool:
        """Wait for a build under way (tests, benchmarks); whether the index is ready."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        return self.ready

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()  # an index left invalid is dropped by the next build
            await asyncio.gather(self._task, return_exceptions=True)

    async def _ensure(self) -> None:
        wait_s = LOCK_POLL_S
        try:
            while not await self._build_if_locked():
                # Another replica builds it. Its build waits for every open transaction,
                # so this one asks again with its connection handed back, not blocked.
                await asyncio.sleep(wait_s)
                wait_s = min(2 * wait_s, MAX_LOCK_POLL_S)
        except Exception as exc:
            self._next_try = self._monotonic() + RETRY_S
            log.warning(
                "semantic cache: building the first stage's database index failed; its "
                "searches scan the scope meanwhile",
                extra={"error": repr(exc)},
            )
            return
        self.ready = True

    async def _build_if_locked(self) -> bool:
        """Under the advisory lock, build the index unless it is valid; False when another
        replica holds the lock."""
        q = queries()
        async with self._db.autocommit() as conn:
            cursor = await conn.execute(q["first_index_lock"])
            locked = await cursor.fetchone()
            if locked is None or not locked["locked"]:
                return False
            try:
                cursor = await conn.execute(q["first_index_valid"])
                row = await cursor.fetchone()
                if row is None or not row["valid"]:
                    if row is not None:  # a build that failed or was cut short
                        await conn.execute(q["first_index_drop"])
                    started = time.monotonic()
                    log.info("semantic cache: building the first stage's database index")
                    await conn.execute(q["first_index_build"])
                    log.info(
                        "semantic cache: the first stage's database index is built",
                        extra={"seconds": round(time.monotonic() - started, 1)},
                    )
            finally:
                await conn.execute(q["first_index_unlock"])
        return True
