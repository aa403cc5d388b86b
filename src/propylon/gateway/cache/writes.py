"""The semantic cache's writes, behind the request: new entries and lookup records.

A request pays for neither: ``SemanticCache.add`` and each lookup's record only queue a row
here, and one background task writes what is pending in one transaction (two pipelined
``executemany``), soon after (``delay_s``), so under load a single write carries many requests'
rows. Until an entry is written, the process that made it still finds it: searches also look
through the pending entries (``pending_entries``), and an entry leaves the queue only once its
transaction has committed. Other replicas see it once written, ``delay_s`` later.

When the database is down rows wait (at most ``capacity``, then the oldest are dropped and
counted) and are written once it answers again; ``close`` writes what is left. A row the
database refuses for its data (``row_error``) is found by writing the batch row by row, and
dropped, so it cannot hold the others back.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from propylon.background import stop_then_drain
from propylon.gateway.cache.key import CacheKey
from propylon.gateway.cache.stats import CacheStats

if TYPE_CHECKING:
    from propylon.gateway.cache.semantic import Embedding

log = logging.getLogger(__name__)

_MAX_BACKOFF_S = 5.0
_WRITE_TIMEOUT_S = 30.0


@dataclass(slots=True, eq=False)
class PendingEntry:
    """An entry queued for writing, searchable in this process meanwhile."""

    key: CacheKey
    question: str
    embedding: Embedding
    params: dict[str, Any] = field(repr=False)  # the INSERT's, the response serialised


Writer = Callable[[list[dict[str, Any]], list[dict[str, Any]]], Awaitable[None]]


class WriteBehind:
    """Queues entries and lookup records; one background task writes them in batches."""

    def __init__(
        self,
        write: Writer,
        *,
        delay_s: float = 0.05,
        capacity: int = 10_000,
        stats: CacheStats | None = None,
        row_error: Callable[[BaseException], bool] = lambda exc: False,
    ) -> None:
        self._write = write
        self._row_error = row_error
        self._stats = stats or CacheStats()
        self._delay = delay_s
        self._capacity = capacity
        self._entries: deque[PendingEntry] = deque()
        self._lookups: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._writing = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._failing = False
        self.dropped = 0
        self.refused = 0  # rows the database refused for their data (``row_error``)
        self.writes = 0  # transactions committed
        self.failed_writes = 0

    @property
    def pending(self) -> int:
        return len(self._entries) + len(self._lookups)

    def pending_entries(self) -> list[PendingEntry]:
        """The entries not yet committed (a snapshot)."""
        return list(self._entries)

    def add_entry(self, entry: PendingEntry) -> None:
        self._push(self._entries, entry)

    def add_lookup(self, params: dict[str, Any]) -> None:
        self._push(self._lookups, params)

    async def flush(self) -> None:
        """Write what is pending now; raise when the database does not take it."""
        async with self._writing:
            entries, lookups = list(self._entries), list(self._lookups)
            if not entries and not lookups:
                return
            try:
                await self._write_rows(entries, lookups)
            except Exception as exc:
                if not self._row_error(exc):
                    raise
                await self._one_by_one(entries, lookups)
            self.writes += 1

    async def _write_rows(self, entries: list[PendingEntry], lookups: list[dict[str, Any]]) -> None:
        await asyncio.wait_for(self._write([e.params for e in entries], lookups), _WRITE_TIMEOUT_S)
        # Only now leave the queue: until committed, searches here still find them.
        _forget(self._entries, entries)
        _forget(self._lookups, lookups)

    async def _one_by_one(self, entries: list[PendingEntry], lookups: list[dict[str, Any]]) -> None:
        """A row the database refuses (its data, not its availability) must not hold the
        others back for ever: each is written alone, and the refused ones are dropped."""
        rows: list[tuple[list[PendingEntry], list[dict[str, Any]]]] = [
            *(([e], []) for e in entries),
            *(([], [lookup]) for lookup in lookups),
        ]
        for alone in rows:
            try:
                await self._write_rows(*alone)
            except Exception as exc:
                if not self._row_error(exc):
                    raise
                _forget(self._entries, alone[0])
                _forget(self._lookups, alone[1])
                self.refused += 1
                self._stats.errors["database"] += 1
                log.warning(
                    "semantic cache: a row refused by the database was dropped",
                    extra={"error": repr(exc)},
                )

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the background task, then write what is pending within ``timeout``."""
        task, self._task = self._task, None
        await stop_then_drain(
            task,
            self.flush,
            timeout=timeout,
            lost=lambda: self.pending,
            log=log,
            message="semantic cache: rows lost at shutdown",
        )

    def _push(self, queue: deque[Any], item: Any) -> None:
        if self.pending >= self._capacity:
            # The database has been away long enough to fill the queue: drop the oldest,
            # lookup records (telemetry) before entries.
            (self._lookups if self._lookups else self._entries).popleft()
            self.dropped += 1
            self._stats.dropped += 1
        queue.append(item)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="propylon-semantic-cache-writes"
            )
        self._wake.set()

    async def _run(self) -> None:
        failures = 0
        while True:
            await self._wake.wait()
            backoff = min(max(self._delay, 0.05) * 2**failures, _MAX_BACKOFF_S)
            await asyncio.sleep(backoff if failures else self._delay)
            self._wake.clear()
            try:
                await self.flush()
            except Exception as exc:
                failures = min(failures + 1, 10)
                self.failed_writes += 1
                self._stats.errors["database"] += 1
                self._wake.set()  # try again, later
                if not self._failing:
                    log.warning(
                        "semantic cache: database unavailable; new entries wait in memory",
                        extra={"pending": self.pending, "error": repr(exc)},
                    )
                self._failing = True
                continue
            if self._failing:
                log.info("semantic cache: database back; pending entries written")
            self._failing = False
            failures = 0


def _forget(queue: deque[Any], written: list[Any]) -> None:
    """Drop ``written`` from the head of ``queue``: they are its oldest items, less any a full
    queue dropped meanwhile, and newer ones were only appended."""
    ids = {id(item) for item in written}
    while queue and id(queue[0]) in ids:
        queue.popleft()
