"""This replica's copy of the first stage's static vectors: a miss costs no database round trip.

Most semantic lookups are misses, and behind the first stage (``first_stage.py``) a miss only
needs the static vectors of the entries in its scope: this index keeps them (with each entry's
question, which the second check's vetoes read) in one numpy matrix per scope (tenant, model,
scope, embedder, static table), so a lookup compares in memory and reads the database only
for a candidate that passed the loose threshold and no veto (its answer, its embedder vector
and its learnt threshold are read then, by id: the database stays the source of truth for
everything but the static vector and the question, which an entry never changes).

The index follows ``cache_entries`` by id. A lookup at least ``refresh_s`` after the last
refresh first reads the rows added since (one statement, usually empty), so an entry written
by another replica is found here at most ``refresh_s`` after it was committed (which is that
replica's write delay after its answer). An entry of this replica is here from the moment it
is queued for writing, under a provisional (negative) id (``queued``), renamed to its row's
id when its write commits (``added``) and removed if it never will be (``unqueued``): a
lookup costs the same however many entries wait for the database. Ids are handed out before
commit, so a transaction that commits after a higher id was read leaves a gap: gaps are
asked for again at each refresh for ``GAP_S`` (longer than a write may take) and then
forgotten. Rows removed elsewhere (a purge, the expiry sweep) are found out when a candidate's
row is read and is gone: it is dropped here then; an expired entry is skipped by its
``expires_at``. A scope larger than ``max_scope`` entries, or an index over ``max_entries``
in all, is searched in the database as before (HNSW), and so is every lookup until the first
full read of the table, started in the background by the first lookup, has finished (a failed
read is tried again ``refresh_s`` later; a refresh once loaded is made by the lookup that
finds it due, one at a time, and a failure of it is that lookup's miss).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from propylon.db import vectors
from propylon.gateway.cache.key import CacheKey
from propylon.gateway.cache.queries import queries

log = logging.getLogger(__name__)

ScopeKey = tuple[str, str, str]  # tenant, model, scope
GAP_S = 90.0  # a write's timeout (30 s) and its queue's wait, with room
PAGE = 5000  # rows per statement of a refresh
MAX_GAPS = 10_000  # ids asked for again at most (the oldest are forgotten first)
MAX_JUMP = 2_000  # a longer run of missing ids is rows deleted, not writes in flight
# Entries of one scope searched in memory; past it the database searches (under load, a scan
# of 7,500 entries and more cost more than PostgreSQL's HNSW search: docs/benchmarks.md, "Fast
# defaults: session 13").
MAX_SCOPE = 5_000


@dataclass(slots=True)
class _Scope:
    """The entries of one scope: normalised static vectors, ids, questions, expiry times."""

    dims: int
    ids: list[int] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    expires: NDArray[np.float64] = field(default_factory=lambda: np.zeros(16))
    matrix: NDArray[np.float32] = field(init=False)
    provisional: dict[int, int] = field(default_factory=dict)  # provisional id -> its row
    soonest: float = math.inf  # the earliest expiry time of a row: none expired before it

    def __post_init__(self) -> None:
        self.matrix = np.zeros((16, self.dims), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.ids)

    def add(
        self, entry_id: int, question: str, vector: NDArray[np.float32], expires: float
    ) -> None:
        n = len(self.ids)
        if n == len(self.matrix):
            self.matrix = np.concatenate([self.matrix, np.zeros_like(self.matrix)])
            self.expires = np.concatenate([self.expires, np.zeros_like(self.expires)])
        norm = math.sqrt(float(vector @ vector))  # np.linalg.norm's sum, fewer calls
        self.matrix[n] = vector / norm if norm else vector
        self.expires[n] = expires
        self.soonest = min(self.soonest, expires)
        self.ids.append(entry_id)
        self.questions.append(question)
        if entry_id < 0:
            self.provisional[entry_id] = n

    def rename(self, old: int, new: int) -> bool:
        """Give the provisional row ``old`` the id ``new``; False when there is no such row."""
        row = self.provisional.pop(old, None)
        if row is None:
            return False
        self.ids[row] = new
        return True

    def keep(self, wanted: Callable[[int], bool]) -> int:
        """Keep the rows whose index ``wanted`` accepts; return how many were removed."""
        rows = [i for i in range(len(self.ids)) if wanted(i)]
        removed = len(self.ids) - len(rows)
        if removed:
            self.ids = [self.ids[i] for i in rows]
            self.questions = [self.questions[i] for i in rows]
            self.provisional = {i: row for row, i in enumerate(self.ids) if i < 0}
            size = max(16, len(rows))
            matrix = np.zeros((size, self.dims), dtype=np.float32)
            matrix[: len(rows)] = self.matrix[rows]
            expires = np.zeros(size)
            expires[: len(rows)] = self.expires[rows]
            self.matrix, self.expires = matrix, expires
            self.soonest = float(expires[: len(rows)].min()) if rows else math.inf
        return removed

    def nearest(
        self, query: NDArray[np.float32], k: int, now: float, floor: float = -math.inf
    ) -> list[tuple[int, str, float]]:
        """The ``k`` nearest rows at a cosine of at least ``floor``, nearest first."""
        n = len(self.ids)
        # BLAS: 2.5 times einsum's speed on one thread (4,600 x 256: 72 against 178 µs). On
        # several it spins on a busy host (2,000 x 256: 0.6-5 ms), so ``propylon serve`` keeps
        # OpenBLAS on one (``cli._one_blas_thread``).
        similarities = self.matrix[:n] @ query
        if now >= self.soonest:  # some row may have expired (rare: entries live an hour)
            similarities[self.expires[:n] <= now] = -np.inf
        # Most lookups find no row at the floor: the comparison spares them the partition
        # (at 3,400 rows, 33 against 75 µs a lookup in a throwaway loop).
        top = np.flatnonzero(similarities >= floor) if floor > -math.inf else np.arange(n)
        if len(top) > k:
            top = top[np.argpartition(-similarities[top], k - 1)[:k]]
        found = [(self.ids[i], self.questions[i], float(similarities[i])) for i in top]
        return sorted((f for f in found if f[2] > -np.inf), key=lambda f: -f[2])


class FirstIndex:
    """The static vectors of ``cache_entries`` of one embedder and static table, by scope."""

    def __init__(
        self,
        database: Any,
        *,
        embedder: str,
        first_model: str,
        refresh_s: float = 1.0,
        max_entries: int = 50_000,
        max_scope: int = MAX_SCOPE,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = database
        self._embedder = embedder
        self._first_model = first_model
        self._refresh_s = refresh_s
        self._max_entries = max_entries
        self._max_scope = max_scope
        self._clock = clock  # wall clock: entries' expiry times
        self._monotonic = monotonic  # refresh times
        self._scopes: dict[ScopeKey, _Scope] = {}
        self._after = 0  # every id up to here was read, or is a gap
        self._gaps: dict[int, float] = {}  # id -> when it was first missed
        self._next_refresh = 0.0  # monotonic
        self._loaded = False  # the first full read finished
        self._loading: asyncio.Task[None] | None = None  # the first full read, in the background
        self._next_load = 0.0  # monotonic: when a failed first read may be tried again
        self._full = False  # over max_entries: the database searches
        self._refreshing = asyncio.Lock()
        self._ahead: set[int] = set()  # ids above ``_after`` this replica added itself
        self._provisional = 0  # the last provisional id handed out (``queued``)
        self.refreshes = 0
        self.entries = 0

    @property
    def usable(self) -> bool:
        return self._loaded and not self._full

    def queued(
        self, key: ScopeKey, question: str, vector: NDArray[np.float32], ttl_s: float
    ) -> int | None:
        """An entry of this replica waits for its write: in the index at once, under the
        provisional id returned (negative; None when the index is not in use)."""
        if not self.usable:
            return None  # searched in the write queue (and the first full read, once written)
        self._provisional -= 1
        self._add(key, self._provisional, question, vector, self._clock() + ttl_s)
        return self._provisional

    def added(
        self,
        entry_id: int,
        key: ScopeKey,
        question: str,
        vector: NDArray[np.float32],
        ttl_s: float,
        provisional: int | None = None,
    ) -> None:
        """This replica committed an entry (queued as ``provisional``, if it was): in the
        index at once under its id, and not parsed again when a refresh reads its row."""
        if not self.usable:
            return  # the first full read will find it
        read = entry_id <= self._after and self._gaps.pop(entry_id, None) is None
        scope = self._scopes.get(key)
        if provisional is not None and scope is not None:
            if read:  # a refresh read the row before its write reported it: here twice
                self.unqueued(provisional)
                return
            if scope.rename(provisional, entry_id):
                if entry_id > self._after:
                    self._ahead.add(entry_id)
                return
        if read:
            return  # a refresh read it already
        if entry_id > self._after:
            self._ahead.add(entry_id)
        self._add(key, entry_id, question, vector, self._clock() + ttl_s)

    def unqueued(self, provisional: int) -> None:
        """A queued entry that will not be written (refused, or dropped from a full queue)."""
        self.forget([provisional])

    async def nearest(
        self, key: CacheKey, first: NDArray[np.float32], k: int, floor: float = -math.inf
    ) -> list[tuple[int, str, float]] | None:
        """The ``k`` entries of ``key``'s scope nearest to ``first`` (id, question, cosine)
        at a cosine of at least ``floor``, refreshed first when due; None when the database
        must search instead."""
        if self._full:
            return None
        if not self._loaded:
            self._start_loading()  # in the background: no request waits for the whole table
            return None
        if self._monotonic() >= self._next_refresh and not self._refreshing.locked():
            # (while another lookup reads the new rows, search what is here)
            async with self._refreshing:
                if self._monotonic() >= self._next_refresh:
                    await self._refresh()
        if self._full:
            return None
        scope = self._scopes.get((key.tenant_id, key.model, key.scope))
        if scope is None or len(first) != scope.dims:
            return []
        if len(scope) > self._max_scope:
            return None
        norm = float(np.linalg.norm(first))
        query = (first / norm if norm else first).astype(np.float32, copy=False)
        return scope.nearest(query, k, self._clock(), floor)

    async def loaded(self) -> bool:
        """Start the first full read if it has not begun, wait for it; whether it succeeded."""
        if self._loaded:
            return True
        self._next_load = 0.0
        self._start_loading()
        if self._loading is not None:
            await self._loading
        return self._loaded

    async def close(self) -> None:
        if self._loading is not None and not self._loading.done():
            self._loading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loading

    def _start_loading(self) -> None:
        if self._loaded or (self._loading is not None and not self._loading.done()):
            return
        if self._monotonic() < self._next_load:
            return  # the last attempt failed: the database searches meanwhile
        self._loading = asyncio.create_task(self._load(), name="semantic_cache_index_load")

    async def _load(self) -> None:
        try:
            async with self._refreshing:
                await self._refresh()
        except Exception as exc:
            self._next_load = self._monotonic() + self._refresh_s
            log.warning(
                "semantic cache: reading the first-stage index failed; the database searches",
                extra={"error": repr(exc)},
            )

    def forget(self, ids: Iterable[int]) -> None:
        """Entries whose rows are gone (purged, swept, deleted elsewhere)."""
        gone = set(ids)
        if gone:
            self._keep(lambda scope, i: scope.ids[i] not in gone)

    def purge(self, *, tenant_id: str | None, model: str | None) -> None:
        """This replica purged these entries from the database."""
        for (tenant, name, scope_hash), scope in list(self._scopes.items()):
            if (tenant_id is None or tenant == tenant_id) and (model is None or name == model):
                self.entries -= len(scope)
                del self._scopes[(tenant, name, scope_hash)]

    def _keep(self, wanted: Callable[[_Scope, int], bool]) -> None:
        for scope in self._scopes.values():
            self.entries -= scope.keep(partial(wanted, scope))

    async def _refresh(self) -> None:
        """Read the rows added since the last refresh (and the gaps), page by page: a
        refresh cut short (the lookup's timeout) keeps what it read."""
        while True:
            now = self._monotonic()
            self._gaps = {g: t for g, t in self._gaps.items() if now - t < GAP_S}
            params = {
                "after": self._after,
                "gaps": list(self._gaps),
                "embedder": self._embedder,
                "first_model": self._first_model,
                "limit": PAGE,
            }
            async with self._db.autocommit() as conn:
                cursor = await conn.execute(queries()["index_rows"], params)
                rows = await cursor.fetchall()
            self._take(rows, now)
            if len(rows) < PAGE or self._full:
                break
        self._loaded = True
        self.refreshes += 1
        self._next_refresh = self._monotonic() + self._refresh_s

    def _take(self, rows: list[Any], now: float) -> None:
        seen = self._after
        for row in rows:
            entry_id = int(row["id"])
            self._gaps.pop(entry_id, None)
            if entry_id > seen:
                if entry_id - seen <= MAX_JUMP:
                    for gap in range(seen + 1, entry_id):  # ids not committed (yet)
                        self._gaps[gap] = now
                seen = entry_id
            if row["first_vector"] is None or entry_id in self._ahead:
                self._ahead.discard(entry_id)
                continue  # another embedder or static table, expired, or added already
            key = (row["tenant_id"], row["model"], row["scope"])
            vector = vectors.from_binary(row["first_vector"])
            self._add(key, entry_id, row["question"], vector, float(row["expires_at"]))
        self._after = seen
        if len(self._gaps) > MAX_GAPS:
            for gap in sorted(self._gaps)[: len(self._gaps) - MAX_GAPS]:
                del self._gaps[gap]
        if self.entries > self._max_entries:
            self._drop_expired()
        if self.entries > self._max_entries and not self._full:
            self._full = True
            self._scopes.clear()
            log.warning(
                "semantic cache: more than %d entries, the first stage searches the database",
                self._max_entries,
            )

    def _add(
        self,
        key: ScopeKey,
        entry_id: int,
        question: str,
        vector: NDArray[np.float32],
        expires: float,
    ) -> None:
        scope = self._scopes.get(key)
        if scope is None or scope.dims != len(vector):
            scope = self._scopes[key] = _Scope(len(vector))
        scope.add(entry_id, question, vector, expires)
        self.entries += 1

    def _drop_expired(self) -> None:
        now = self._clock()
        self._keep(lambda scope, i: bool(scope.expires[i] > now))
