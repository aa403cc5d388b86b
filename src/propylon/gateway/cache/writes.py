"""The semantic cache's writes, behind the request: new entries and lookup records.

A request pays for neither: ``SemanticCache.add`` and each lookup's record only queue a row
here, and one background task writes what is pending in one transaction (two pipelined
``executemany``), soon after (``delay_s``), so under load a single write carries many requests'
rows. Until an entry is written, the process that made it still finds it: searches also look
through the pending entries (``pending_entries``), and an entry leaves the queue only once its
transaction has committed. Other replicas see it once written, ``delay_s`` later.

When the database is down rows wait (at most ``capacity``, then the oldest are dropped and
counted) and are written once it answers again; ``close`` writes what is left. A row the
database refuses for its data is found by writing the batch row by row, and dropped, so it
cannot hold the others back. The loop, its backoff and its supervision are the shared
``WriterLoop``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from propylon.background import WriterLoop, write_isolating_refused
from propylon.gateway.cache.key import CacheKey
from propylon.gateway.cache.stats import CacheStats

if TYPE_CHECKING:
    from propylon.gateway.cache.semantic import Embedding

log = logging.getLogger(__name__)

_WRITE_TIMEOUT_S = 30.0


@dataclass(slots=True, eq=False)
class PendingEntry:
    """An entry queued for writing, searchable in this process meanwhile."""

    key: CacheKey
    question: str
    embedding: Embedding | None  # None: not computed yet (the first stage's entries)
    params: dict[str, Any] = field(repr=False)  # the INSERT's, the response serialised
    first: Embedding | None = None  # the static vector (``first_stage.py``)
    provisional: int | None = None  # its id in the first-stage index until written

    def embedded(self, embedding: Embedding) -> None:
        """The embedder's vector, computed while the entry waits: written with its row (if
        its write has not begun)."""
        self.embedding = embedding
        self.params["embedding"] = embedding
        self.params["dims"] = len(embedding)


Writer = Callable[[list[dict[str, Any]], list[dict[str, Any]]], Awaitable[None]]
Row = tuple[list[PendingEntry], list[dict[str, Any]]]  # one entry or one lookup, alone


class WriteBehind:
    """Queues entries and lookup records; one background task writes them in batches."""

    def __init__(
        self,
        write: Writer,
        *,
        delay_s: float = 0.05,
        capacity: int = 10_000,
        stats: CacheStats | None = None,
        unqueued: Callable[[PendingEntry], None] = lambda entry: None,
    ) -> None:
        self._write = write
        self._unqueued = unqueued  # told of an entry that leaves the queue unwritten
        self._stats = stats or CacheStats()
        self._capacity = capacity
        self._entries: deque[PendingEntry] = deque()
        self._lookups: deque[dict[str, Any]] = deque()
        self._writing = asyncio.Lock()
        self.loop = WriterLoop(
            "semantic_cache_writes", self._flush_counted, log=log, interval_s=None, linger_s=delay_s
        )
        self.dropped = 0
        self.writes = 0  # transactions committed

    @property
    def refused(self) -> int:
        """Rows dropped because the database refused their data."""
        return self.loop.refused

    @property
    def failed_writes(self) -> int:
        return self.loop.failed_writes

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
            alone: list[Row] = [
                *(([e], []) for e in entries),
                *(([], [lookup]) for lookup in lookups),
            ]
            await write_isolating_refused(alone, self._write_rows, self._refused)
            self.writes += 1

    async def _flush_counted(self) -> None:
        try:
            await self.flush()
        except Exception:
            self._stats.errors["database"] += 1  # GET /admin/cache/stats
            raise

    async def _write_rows(self, rows: Sequence[Row]) -> None:
        entries = [e for row in rows for e in row[0]]
        lookups = [lookup for row in rows for lookup in row[1]]
        async with asyncio.timeout(_WRITE_TIMEOUT_S):  # not wait_for: see background.wait_event
            await self._write([e.params for e in entries], lookups)
        # Only now leave the queue: until committed, searches here still find them.
        _forget(self._entries, entries)
        _forget(self._lookups, lookups)

    def _refused(self, row: Row, exc: BaseException) -> None:
        _forget(self._entries, row[0])
        for entry in row[0]:
            self._unqueued(entry)
        _forget(self._lookups, row[1])
        self._stats.errors["database"] += 1
        self.loop.count_refused(exc, _named(row))

    async def close(self, timeout: float = 5.0) -> None:
        """Stop the background task, then write what is pending within ``timeout``."""
        await self.loop.stop(self.flush, timeout=timeout, lost=lambda: self.pending)

    def _push(self, queue: deque[Any], item: Any) -> None:
        if self.pending >= self._capacity:
            # The database has been away long enough to fill the queue: drop the oldest,
            # lookup records (telemetry) before entries.
            if self._lookups:
                self._lookups.popleft()
            else:
                self._unqueued(self._entries.popleft())
            self.dropped += 1
            self._stats.dropped += 1
        queue.append(item)
        self.loop.wake()


def _named(row: Row) -> dict[str, object]:
    """What names a refused row in the log: its kind, tenant and model, never its text."""
    entries, lookups = row
    if entries:
        key = entries[0].key
        return {"row": "entry", "tenant_id": key.tenant_id, "model": key.model}
    return {
        "row": "lookup",
        "tenant_id": lookups[0].get("tenant_id"),
        "model": lookups[0].get("model"),
    }


def _forget(queue: deque[Any], written: list[Any]) -> None:
    """Drop ``written`` from the head of ``queue``: they are its oldest items, less any a full
    queue dropped meanwhile, and newer ones were only appended."""
    ids = {id(item) for item in written}
    while queue and id(queue[0]) in ids:
        queue.popleft()
