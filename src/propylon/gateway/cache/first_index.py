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
``expires_at``. An index over ``max_entries`` in all is searched in the database (whose HNSW
index is then built: ``database_index.py``), and so is every lookup until the first full
read of the table, started in the background by the first lookup, has finished (a failed read
is tried again ``refresh_s`` later; a refresh once loaded is made by the lookup that finds it
due, one at a time, and a failure of it is that lookup's miss).

A scope is compared with every row of its matrix up to ``GRAPH_FROM`` entries. From there its
rows are also put in an HNSW graph of their own (usearch, half-precision copies, built in a
worker thread from a snapshot, then brought up to date on the loop), which finds its nearest
rows without reading the whole matrix; their cosines are then computed again from the matrix
in float32 (as the scan computes them, up to the last bit), so the floor and the order are
the scan's and only a row the graph missed is lost. A
scan reads every row from memory for each lookup: under load it cost as much as the
database's search past ~10,000 rows (docs/benchmarks.md, "Fast defaults: session 15"). Rows
removed from a graphed scope (``keep``) retire its graph; the scan serves until a new one is
built.
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
from usearch.index import Index

from propylon.db import vectors
from propylon.gateway.cache.key import CacheKey
from propylon.gateway.cache.queries import queries

log = logging.getLogger(__name__)

ScopeKey = tuple[str, str, str]  # tenant, model, scope
GAP_S = 90.0  # a write's timeout (30 s) and its queue's wait, with room
PAGE = 5000  # rows per statement of a refresh
MAX_GAPS = 10_000  # ids asked for again at most (the oldest are forgotten first)
MAX_JUMP = 2_000  # a longer run of missing ids is rows deleted, not writes in flight
# Entries of a scope from which its graph searches it. Below it a scan is exact and an insert
# costs nothing; in a throwaway loop on CLINC150/Banking77 questions' static vectors, a graph
# search cost 72-89 us at 4,000-17,000 rows against a warm scan's 37-223 us, an insert 51-70
# us, and it found 99.65-100 % of the rows at a cosine of 0.85 among the exact 8 nearest. A
# lookup that misses also stores an entry, so a graphed scope pays a search and an insert where
# a scanned one pays a scan: under load (bench.cache_growth, session 16) scopes of 4,500-6,900
# entries served 87-92 % of direct scanned against 79-85 % through a graph (4,000 until then).
GRAPH_FROM = 8_000
GRAPH_LINKS = 16  # usearch's connectivity (its default)
GRAPH_EXPANSION = 64  # usearch's expansion, adding and searching (its default: 128 / 64)
CATCH_UP = 256  # rows left to the loop by a graph built meanwhile (~60 us each); more: its thread


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
    graph: Index | None = None  # every row's vector, keyed by row, once built
    building: bool = False  # a graph is being built from a snapshot
    generation: int = 0  # rows renumbered (``keep``) this many times: an older build is void
    graph_from: int = GRAPH_FROM

    def __post_init__(self) -> None:
        self.matrix = np.zeros((16, self.dims), dtype=np.float32)

    @property
    def wants_graph(self) -> bool:
        return self.graph is None and not self.building and len(self.ids) >= self.graph_from

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
        if self.graph is not None:
            try:
                self.graph.add(n, self.matrix[n], threads=1)
            except Exception as exc:  # the scan serves (this row included) until a rebuild
                self.graph, self.generation = None, self.generation + 1
                log.warning("semantic cache: a scope's graph refused a row: %r", exc)
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
            self.graph, self.generation = None, self.generation + 1  # its keys were rows
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
        if self.graph is not None:
            return self._graph_nearest(self.graph, query, k, now, floor)
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

    def _graph_nearest(
        self, graph: Index, query: NDArray[np.float32], k: int, now: float, floor: float
    ) -> list[tuple[int, str, float]]:
        """``nearest`` through the graph: its candidates (twice ``k`` when a row may have
        expired, as expired rows are still in it), their cosines from the matrix."""
        found = graph.search(query, 2 * k if now >= self.soonest else k, threads=1)
        rows = np.asarray(found.keys, dtype=np.int64)
        rows = rows[self.expires[rows] > now]
        similarities = self.matrix[rows] @ query
        kept = [
            (self.ids[row], self.questions[row], float(similarity))
            for row, similarity in zip(rows.tolist(), similarities, strict=True)
            if similarity >= floor
        ]
        return sorted(kept, key=lambda f: -f[2])[:k]

    def snapshot(self) -> tuple[int, NDArray[np.float32]]:
        """The generation and a copy of the rows so far, to build a graph from elsewhere."""
        return self.generation, self.matrix[: len(self.ids)].copy()

    def take_graph(self, generation: int, graph: Index) -> bool:
        """Use ``graph``, built from the rows of ``generation``, after adding the rows added
        since; False (not used) when rows were renumbered meanwhile, or when more than
        ``CATCH_UP`` rows came (adding them would hold the loop)."""
        self.building = False
        built, n = len(graph), len(self.ids)
        if generation != self.generation or n - built > CATCH_UP:
            return False
        if n > built:
            graph.add(np.arange(built, n), self.matrix[built:n], threads=1)
        self.graph = graph
        return True


def build_graph(dims: int, rows: NDArray[np.float32]) -> Index:
    """An HNSW graph of ``rows`` (unit vectors), keyed by row number: for a worker thread."""
    graph = Index(
        ndim=dims,
        metric="cos",
        dtype="f16",
        connectivity=GRAPH_LINKS,
        expansion_add=GRAPH_EXPANSION,
        expansion_search=GRAPH_EXPANSION,
        enable_key_lookups=False,
    )
    extend_graph(graph, rows)
    return graph


def extend_graph(graph: Index, rows: NDArray[np.float32]) -> None:
    """Add ``rows`` to ``graph`` after those it holds, keyed by their row numbers."""
    if len(rows):
        graph.add(np.arange(len(graph), len(graph) + len(rows)), rows, threads=1)


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
        graph_from: int = GRAPH_FROM,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._db = database
        self._embedder = embedder
        self._first_model = first_model
        self._refresh_s = refresh_s
        self._max_entries = max_entries
        self._graph_from = graph_from
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
        self._builds: set[asyncio.Task[None]] = set()  # graphs built in worker threads
        self.graph_builds = {"built": 0, "restarted": 0, "failed": 0}
        self.refreshes = 0
        self.entries = 0

    @property
    def usable(self) -> bool:
        return self._loaded and not self._full

    @property
    def full(self) -> bool:
        """Over ``max_entries``: the database searches from now on."""
        return self._full

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
        tasks = [*self._builds, *([self._loading] if self._loading is not None else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def sizes(self) -> dict[str, int]:
        """The entries held, by how their scope is searched: ``scan`` or ``graph``."""
        out = {"scan": 0, "graph": 0}
        for scope in self._scopes.values():
            out["graph" if scope.graph is not None else "scan"] += len(scope)
        return out

    async def graphs_built(self) -> None:
        """Wait for the graphs being built (tests, benchmarks)."""
        while self._builds:
            await asyncio.gather(*self._builds, return_exceptions=True)

    def _build(self, scope: _Scope) -> None:
        """Build ``scope``'s graph from a snapshot in a worker thread, add there the rows that
        came meanwhile until at most ``CATCH_UP`` are left (under load rows keep coming while
        a graph is built), then add those on the loop and switch to it (``take_graph``)."""
        scope.building = True
        generation, rows = scope.snapshot()

        async def build() -> None:
            try:
                graph = await asyncio.to_thread(build_graph, scope.dims, rows)
                while scope.generation == generation and len(scope) - len(graph) > CATCH_UP:
                    more = scope.matrix[len(graph) : len(scope)].copy()
                    await asyncio.to_thread(extend_graph, graph, more)
            except Exception as exc:  # the scan goes on serving; tried again by a later add
                scope.building = False
                self.graph_builds["failed"] += 1
                log.warning("semantic cache: building a scope's graph failed: %r", exc)
                return
            if scope.take_graph(generation, graph):
                self.graph_builds["built"] += 1
            elif scope.wants_graph:
                self.graph_builds["restarted"] += 1
                self._build(scope)  # rows were removed meanwhile: their numbers changed

        task = asyncio.create_task(build(), name="semantic_cache_scope_graph")
        self._builds.add(task)
        task.add_done_callback(self._builds.discard)

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
            scope = self._scopes[key] = _Scope(len(vector), graph_from=self._graph_from)
        scope.add(entry_id, question, vector, expires)
        self.entries += 1
        if scope.wants_graph:
            self._build(scope)

    def _drop_expired(self) -> None:
        now = self._clock()
        self._keep(lambda scope, i: bool(scope.expires[i] > now))
