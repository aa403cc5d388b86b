"""The semantic cache: answers found by the meaning of the last user message.

Entries live in PostgreSQL + pgvector (migration 0006). A search never leaves its hard scope
(tenant, resolved model, and the hash of everything else in the request: system prompt,
tools, sampling parameters, preceding turns, version salt), so the only difference it may
bridge is the wording of the question. The nearest candidates above the threshold then pass
the second check (``Verifier``) at the global threshold, or at the entry's own where sampled
verifications raised it (``learn``, migration 0018), or are refused. Every lookup, hit or
miss, is recorded with its best similarity in ``cache_lookups`` so thresholds can be tuned
from real traffic.

Behind the first stage, each replica searches its in-memory copy of the static vectors
(``first_index.py``) and reads a candidate's row by id only when it passed the loose
threshold and the judge's vetoes; without the index a search is one statement in autocommit
(the pool's connections already carry ``hnsw.iterative_scan``, see ``db/database.py``), and the
first such search has the database's HNSW index of static vectors built (``database_index.py``).
Writes never delay the answer: new entries and lookup records go through ``WriteBehind``
(``writes.py``), and until an entry is written a search in this process finds it in the
queue.

The gateway imports no database driver: the store receives any object with psycopg's
``connection()`` / ``execute`` shape (``SQLDatabase``), built by the composition root.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import orjson
from numpy.typing import NDArray

from propylon.db import json_loads, vectors
from propylon.gateway.cache.database_index import DatabaseIndex
from propylon.gateway.cache.key import CacheKey
from propylon.gateway.cache.queries import queries
from propylon.gateway.cache.stats import CacheStats
from propylon.gateway.cache.verifier import Verifier
from propylon.gateway.cache.writes import PendingEntry, WriteBehind
from propylon.gateway.protocol import EmbeddingModel, JSONObject

if TYPE_CHECKING:
    from propylon.gateway.cache.first_index import FirstIndex
    from propylon.gateway.cache.first_stage import FirstStage

log = logging.getLogger(__name__)

INDEXED_DIMS = frozenset({384, 1536})  # sizes with an HNSW index in migration 0006
CANDIDATES = 4  # near neighbours handed to the second check
SWEEP_EVERY = 200  # inserts between two sweeps of expired rows
# This replica's inserts before it first refreshes the table's statistics (``ANALYZE``), then
# at each doubling: a search the database makes (a scope past the index, the first stage or
# the index off) is planned from them. On a table that grew faster than autovacuum's naptime
# (a minute), the planner took a 5,500-entry scope for one row and sorted it whole: 7.6 ms a
# search against 1.0 ms by its HNSW index, and 50 concurrent clients got 70-95 requests/s
# instead of ~300 (docs/benchmarks.md, "Fast defaults: session 13").
ANALYZE_FROM = 1_000
TIGHTEN_GAP = 0.25  # a wrong verification leaves this share of the distance to 1 above it
LOOSEN_SHARE = 0.05  # an agreeing one moves a tightened threshold this share back
LOOKUP_COLUMNS = (  # of a lookup record (``_record_lookup``, query ``record_lookups``)
    "tenant_id",
    "model",
    "embedder",
    "threshold",
    "best_similarity",
    "outcome",
    "entry_id",
    "reason",
)


class EmbedderFailed(RuntimeError):
    """The embedder failed inside a staged search (told apart from the database's failures)."""


class SQLCursor(Protocol):
    async def fetchall(self) -> list[Any]: ...


class SQLConnection(Protocol):
    async def execute(self, query: Any, params: Any = ...) -> Any: ...

    def cursor(self) -> Any: ...


class SQLDatabase(Protocol):
    """What the store needs of ``propylon.db.database.Database``."""

    def connection(
        self, timeout: float | None = None
    ) -> AbstractAsyncContextManager[SQLConnection]: ...

    def autocommit(
        self, timeout: float | None = None
    ) -> AbstractAsyncContextManager[SQLConnection]: ...


class Embedding:
    """A question's vector, with its pgvector text form made when first needed (an insert,
    the database's search), then kept: a lookup answered from memory never formats it."""

    __slots__ = ("_literal", "_norm", "values")

    def __init__(self, values: NDArray[np.float32], literal: str | None = None) -> None:
        self.values = values
        self._literal = literal
        self._norm: float | None = None

    @classmethod
    def of(cls, values: list[float]) -> Embedding:
        return cls(np.asarray(values, dtype=np.float32))

    @property
    def literal(self) -> str:
        if self._literal is None:
            self._literal = vectors.literal(self.values)
        return self._literal

    @property
    def norm(self) -> float:
        if self._norm is None:
            self._norm = float(np.linalg.norm(self.values))
        return self._norm

    def __len__(self) -> int:
        return len(self.values)

    def similarity(self, other: Embedding) -> float:
        """pgvector's ``1 - (a <=> b)``: the cosine."""
        norms = self.norm * other.norm
        return float(self.values @ other.values) / norms if norms else 0.0


@dataclass(frozen=True, slots=True)
class SemanticHit:
    entry_id: int | None  # None: an entry of this process not yet written
    similarity: float
    response: JSONObject
    entry: tuple[str, str, str, str] = ("", "", "", "")  # tenant, model, scope, its question
    probability: float = 1.0  # the judge's rating of this wording for the entry (1: no judge)


@dataclass(frozen=True, slots=True)
class Lookup:
    """The outcome of one search: a hit, or the best similarity seen (None: empty scope)."""

    hit: SemanticHit | None
    best_similarity: float | None
    rejected: int = 0  # candidates above the threshold refused by the second check
    reason: str | None = None  # why the last of them was refused
    embedding: Embedding | None = None  # the question's embedder vector, when it was computed


@dataclass(slots=True)
class Candidate:
    """A cached question found by the first stage (``first_stage.py``)."""

    entry_id: int | None  # None: an entry of this process not yet written
    question: str
    response: str
    embedding: Embedding | None  # the embedder's vector, None until a search first needs it
    stored: bytes | None = None  # its vector as read (``vector_send``), parsed only if near
    min_probability: float | None = None  # the entry's learnt threshold (sampled verification)
    read: bool = True  # False: found by the first-stage index, its row not read yet
    queued: PendingEntry | None = None  # the entry waiting for its write, when it is one

    def row(self, embedding: Embedding) -> dict[str, Any]:
        """As a row of the full search: similarity between the embedder's vectors."""
        assert self.embedding is not None
        return self.at(embedding.similarity(self.embedding))

    def at(self, similarity: float) -> dict[str, Any]:
        """As a row of the full search at ``similarity``."""
        return {
            "id": self.entry_id,
            "question": self.question,
            "response": self.response,
            "min_probability": self.min_probability,
            "similarity": similarity,
        }


class SemanticCache:
    """Embeds questions, searches and stores entries. Methods raise on failure; the caller
    (``CachedChatService``) turns every failure into a miss."""

    def __init__(
        self,
        database: SQLDatabase,
        embedder: EmbeddingModel,
        *,
        embedder_id: str,
        embed_request: JSONObject | None = None,
        verifier: Verifier | None = None,
        record_lookups: bool = True,
        write_delay_s: float = 0.05,
        stats: CacheStats | None = None,
        first_stage: FirstStage | None = None,
        index_entries: int = 0,
        index_refresh_s: float = 1.0,
        analyze_from: int = ANALYZE_FROM,
    ) -> None:
        self._db = database
        self.first_stage = first_stage
        self.index: FirstIndex | None = None
        # Where the index below cannot serve, the database searches; its HNSW index is built
        # then (``database_index.py``).
        self.database_index = DatabaseIndex(database)
        if first_stage is not None and index_entries > 0:
            from propylon.gateway.cache.first_index import FirstIndex

            self.index = FirstIndex(
                database,
                embedder=embedder_id,
                first_model=first_stage.model_id,
                refresh_s=index_refresh_s,
                max_entries=index_entries,
            )
        self._embedder = embedder
        self.embedder_id = embedder_id
        self._embed_request = embed_request
        self._verifier = verifier
        self._record = record_lookups
        self._inserts = 0
        self._next_analyze = analyze_from
        self.analyzed = 0  # statistics refreshes this replica made
        self._provisional: dict[int, PendingEntry] = {}  # queued entries in the index, by id
        self.stats = stats if stats is not None else CacheStats()
        self.writes = WriteBehind(
            self._write, delay_s=write_delay_s, stats=self.stats, unqueued=self._unqueued
        )

    async def embed(self, question: str) -> Embedding:
        result = await self._embedder.embed([question], self._embed_request)
        return Embedding.of(result.vectors[0])

    async def find(
        self, key: CacheKey, question: str, embedding: Embedding, threshold: float
    ) -> Lookup:
        dims = len(embedding)
        vector = f"vector({dims})" if dims in INDEXED_DIMS else "vector"
        search = queries()["search"].format(vector=vector, dims=dims)
        params = {
            "tenant_id": key.tenant_id,
            "model": key.model,
            "scope": key.scope,
            "embedder": self.embedder_id,
            "embedding": embedding.literal,
            "limit": CANDIDATES,
        }
        # Taken before the search: an entry leaves the queue only once committed, so it is
        # either here or visible to the search.
        queued = self._queued(key, embedding)
        async with self._db.autocommit() as conn:
            cursor = await conn.execute(search, params)
            rows = await cursor.fetchall()
        if queued:
            rows = sorted([*rows, *queued], key=lambda r: -float(r["similarity"]))[:CANDIDATES]
        lookup = self._choose(key, question, rows, threshold)
        self._record_lookup(key, threshold, lookup)
        return lookup

    async def find_staged(
        self, key: CacheKey, question: str, first: Embedding, threshold: float
    ) -> Lookup:
        """``find`` behind the first stage: the embedder reads ``question`` (and the cached
        questions it is compared with) only when a static vector passed the loose threshold.
        A lookup that needed no embedder call is recorded as a miss with reason
        ``first-stage``."""
        assert self.first_stage is not None
        near = [
            c
            for c, similarity in await self._first_candidates(key, first)
            if similarity >= self.first_stage.threshold and not self._vetoed(question, c.question)
        ]
        if any(not c.read for c in near):
            near = await self._read(near)
        if not near:
            self.stats.first_stage["decided"] += 1
            lookup = Lookup(None, None, reason="first-stage")
            self._record_lookup(key, threshold, lookup)
            return lookup
        twins = [c.at(1.0) for c in near if c.question == question]
        if twins:  # the very question: ``_choose`` serves it unjudged, so no vector is needed
            self.stats.first_stage["decided"] += 1
            lookup = self._choose(key, question, twins, threshold)
            self._record_lookup(key, threshold, lookup)
            return lookup
        self.stats.first_stage["deferred"] += 1
        for candidate in near:
            if candidate.embedding is None and candidate.stored is not None:
                candidate.embedding = Embedding(vectors.from_binary(candidate.stored))
        missing = [c for c in near if c.embedding is None]
        texts = list(dict.fromkeys([question] + [c.question for c in missing]))  # each once
        try:  # one call: the question and the candidates not read yet
            result = await self._embedder.embed(texts, self._embed_request)
        except Exception as exc:
            raise EmbedderFailed(repr(exc)) from exc
        read = dict(zip(texts, result.vectors, strict=True))
        embedding = Embedding.of(read[question])
        for candidate in missing:
            candidate.embedding = Embedding.of(read[candidate.question])
        for candidate in missing:  # a queued entry is written with the vector just computed
            if candidate.queued is not None and candidate.embedding is not None:
                candidate.queued.embedded(candidate.embedding)
        if missing:
            await self._keep_embeddings([c for c in missing if c.entry_id is not None])
        rows = sorted((c.row(embedding) for c in near), key=lambda r: -float(r["similarity"]))
        lookup = self._choose(key, question, rows, threshold)
        self._record_lookup(key, threshold, lookup)
        return Lookup(lookup.hit, lookup.best_similarity, lookup.rejected, lookup.reason, embedding)

    def _vetoed(self, question: str, candidate: str) -> bool:
        """The second check refuses this pair whatever the embedder would say (a veto: another
        number, a negation, ...): no reason to run the embedder for it."""
        if self._verifier is None or question == candidate:
            return False
        return self._verifier.verdict(question, candidate, 1.0).vetoed

    async def _read(self, near: list[Candidate]) -> list[Candidate]:
        """Read the rows of the candidates the index found; drop those whose row is gone."""
        ids = [c.entry_id for c in near if not c.read and c.entry_id is not None]
        async with self._db.autocommit() as conn:
            cursor = await conn.execute(queries()["read_candidates"], {"ids": ids})
            rows = {int(r["id"]): r for r in await cursor.fetchall()}
        kept = []
        for candidate in near:
            if not candidate.read:
                row = rows.get(candidate.entry_id or 0)
                if row is None:
                    continue
                candidate.response = row["response"]
                candidate.stored = row["embedding"]
                candidate.min_probability = row["min_probability"]
                candidate.read = True
            kept.append(candidate)
        if self.index is not None and len(rows) < len(ids):
            self.index.forget(i for i in ids if i not in rows)
        return kept

    async def _first_candidates(
        self, key: CacheKey, first: Embedding
    ) -> list[tuple[Candidate, float]]:
        """The nearest entries of ``key``'s scope by static vector, queued ones included:
        from this replica's index (``first_index.py``: only those at the loose threshold,
        the only ones ``find_staged`` keeps), else from the database."""
        assert self.first_stage is not None
        dims = len(first)
        limit = self.first_stage.candidates
        indexed = (
            None
            if self.index is None
            else await self.index.nearest(key, first.values, limit, self.first_stage.threshold)
        )
        # Queued entries: those in the index (provisional ids) came with its answer; the rest
        # (all of them when the database searches) are searched in the queue.
        queued = [
            (_queued_candidate(e), similarity)
            for e, similarity in self._pending_near(
                key, first, _first_vector, unindexed_only=indexed is not None
            )
        ]
        if indexed is not None:
            found = []
            for entry_id, text, similarity in indexed:
                if entry_id >= 0:
                    found.append((Candidate(entry_id, text, "", None, read=False), similarity))
                elif (entry := self._provisional.get(entry_id)) is not None:
                    found.append((_queued_candidate(entry), similarity))
            return sorted([*found, *queued], key=lambda pair: -pair[1])[:limit]
        if self.index is None or self.index.full:
            self.database_index.wanted()
        search = queries()["search_first"].format(vector=f"vector({dims})", dims=dims)
        params = {
            "tenant_id": key.tenant_id,
            "model": key.model,
            "scope": key.scope,
            "embedder": self.embedder_id,
            "first_model": self.first_stage.model_id,
            "first_vector": first.literal,  # only here: the index answers without it
            "limit": limit,
        }
        async with self._db.autocommit() as conn:
            cursor = await conn.execute(search, params)
            rows = await cursor.fetchall()
        found = [
            (
                Candidate(
                    int(r["id"]),
                    r["question"],
                    r["response"],
                    None,
                    r["embedding"],
                    r["min_probability"],
                ),
                float(r["first_similarity"]),
            )
            for r in rows
        ]
        return sorted([*found, *queued], key=lambda pair: -pair[1])[:limit]

    async def _keep_embeddings(self, candidates: list[Candidate]) -> None:
        """Store the embedder vectors just computed, so no later search computes them again."""
        if not candidates:
            return
        params = [
            {"id": c.entry_id, "embedding": c.embedding.literal, "dims": len(c.embedding)}
            for c in candidates
            if c.embedding is not None
        ]
        async with self._db.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(queries()["set_embedding"], params)

    def _record_lookup(self, key: CacheKey, threshold: float, lookup: Lookup) -> None:
        if self._record:
            self.writes.add_lookup(
                {
                    "tenant_id": key.tenant_id,
                    "model": key.model,
                    "embedder": self.embedder_id,
                    "threshold": threshold,
                    "best_similarity": lookup.best_similarity,
                    "outcome": _outcome(lookup),
                    "entry_id": lookup.hit.entry_id if lookup.hit else None,
                    "reason": lookup.reason,
                }
            )

    async def learn(self, hit: SemanticHit, *, right: bool) -> None:
        """A sampled verification's verdict on ``hit``, kept with the entry (every replica's
        next search reads it). Wrong: the entry's threshold rises above the probability this
        wording got (``TIGHTEN_GAP``), so the same and any lower-rated wording miss. Right: a
        tightened threshold moves ``LOOSEN_SHARE`` back towards the global one, never below
        it. An entry still queued is written first, so the update finds it."""
        if any(e.question == hit.entry[3] for e in self.writes.pending_entries()):
            await self.writes.flush()
        tenant_id, model, scope, question = hit.entry
        params: dict[str, Any] = {
            "tenant_id": tenant_id,
            "model": model,
            "scope": scope,
            "question": question,
        }
        if right:
            floor = self._verifier.min_probability if self._verifier else 0.0
            params |= {"floor": floor, "share": LOOSEN_SHARE}
        else:
            params["raised"] = 1.0 - (1.0 - hit.probability) * TIGHTEN_GAP
        async with self._db.connection() as conn:
            await conn.execute(queries()["loosen" if right else "tighten"], params)

    async def add(
        self,
        key: CacheKey,
        question: str,
        embedding: Embedding | None,
        response: JSONObject,
        ttl_s: int,
        first: Embedding | None = None,
        encoded: bytes | None = None,
    ) -> None:
        """Queue the entry: written soon after, found by this process's searches meanwhile.
        ``embedding`` may be None only with ``first`` (the first stage computes it later);
        ``encoded``: ``response`` as JSON already (not encoded twice)."""
        if embedding is None and first is None:
            raise ValueError("an entry needs its embedding or its first-stage vector")
        if "\x00" in question:
            return  # PostgreSQL text cannot hold NUL (its search failed the same way)
        params = {
            "tenant_id": key.tenant_id,
            "model": key.model,
            "scope": key.scope,
            "embedder": self.embedder_id,
            "dims": None if embedding is None else len(embedding),
            "question": question,
            "embedding": embedding,  # its text made by the writer, off the request path
            "response": (encoded or orjson.dumps(response)).decode(),
            "ttl_s": ttl_s,
            "first_model": None
            if first is None or self.first_stage is None
            else self.first_stage.model_id,
            "first_vector": first,
        }
        entry = PendingEntry(key, question, embedding, params, first)
        if self.index is not None and first is not None:
            scope = (key.tenant_id, key.model, key.scope)
            entry.provisional = self.index.queued(scope, question, first.values, ttl_s)
            if entry.provisional is not None:
                self._provisional[entry.provisional] = entry
                params["provisional"] = entry.provisional
        self.writes.add_entry(entry)

    def _unqueued(self, entry: PendingEntry) -> None:
        if entry.provisional is None or self.index is None:
            return
        if self._provisional.pop(entry.provisional, None) is not None:
            self.index.unqueued(entry.provisional)

    async def purge(self, *, tenant_id: str | None = None, model: str | None = None) -> int:
        await self.writes.flush()  # what is queued is cached already: purge it too
        async with self._db.connection() as conn:
            cursor = await conn.execute(
                queries()["purge"], {"tenant_id": tenant_id, "model": model}
            )
        if self.index is not None:
            self.index.purge(tenant_id=tenant_id, model=model)
        return int(cursor.rowcount)

    async def aclose(self) -> None:
        """Write the queued entries and lookup records."""
        if self.index is not None:
            await self.index.close()
        await self.database_index.close()
        await self.writes.close()

    async def _write(self, entries: list[dict[str, Any]], lookups: list[dict[str, Any]]) -> None:
        ids: list[int] = []
        async with self._db.connection() as conn, conn.cursor() as cursor:
            if entries:
                rows = [_vectors_as_text(e) for e in entries]
                await cursor.executemany(queries()["insert"], rows, returning=True)
                while True:
                    ids += [int(r["id"]) for r in await cursor.fetchall()]
                    if not cursor.nextset():
                        break
            if lookups:  # one statement, not one per lookup (most of the rows written)
                columns = {name: [row[name] for row in lookups] for name in LOOKUP_COLUMNS}
                await cursor.execute(queries()["record_lookups"], columns)
            before, self._inserts = self._inserts, self._inserts + len(entries)
            if self._inserts // SWEEP_EVERY > before // SWEEP_EVERY:
                await conn.execute(queries()["sweep_expired"])
                await conn.execute(queries()["sweep_lookups"])
        if self.index is not None:  # committed: in this replica's index at once
            for params, entry_id in zip(entries, ids, strict=True):
                first = params["first_vector"]
                provisional = params.get("provisional")
                if provisional is not None:
                    self._provisional.pop(provisional, None)
                if first is not None:
                    scope = (params["tenant_id"], params["model"], params["scope"])
                    question, ttl_s = params["question"], params["ttl_s"]
                    self.index.added(entry_id, scope, question, first.values, ttl_s, provisional)
        if self._inserts >= self._next_analyze:
            self._next_analyze = 2 * self._inserts
            await self._analyze()

    async def _analyze(self) -> None:
        """Refresh ``cache_entries``' statistics, after the write committed: a failure costs
        no entry (logged), and a replica already analysing it is not waited for."""
        try:
            async with self._db.autocommit() as conn:
                await conn.execute(queries()["analyze"])
            self.analyzed += 1
        except Exception as exc:
            log.warning(
                "semantic cache: refreshing the table's statistics failed",
                extra={"error": repr(exc)},
            )

    def _queued(self, key: CacheKey, embedding: Embedding) -> list[dict[str, Any]]:
        """The queued entries in ``key``'s scope, as search rows (no id yet)."""
        return [
            {
                "id": None,
                "question": entry.question,
                "response": entry.params["response"],
                "min_probability": None,
                "similarity": similarity,
            }
            for entry, similarity in self._pending_near(key, embedding, _embedder_vector)
        ]

    def _pending_near(
        self,
        key: CacheKey,
        vector: Embedding,
        of: Callable[[PendingEntry], Embedding | None],
        *,
        unindexed_only: bool = False,
    ) -> list[tuple[PendingEntry, float]]:
        """The queued entries in ``key``'s scope whose vector ``of`` has ``vector``'s length
        (``unindexed_only``: those not in the first-stage index), each with its cosine to
        ``vector``, in one matrix product."""
        dims = len(vector)
        pending = self.writes.pending_entries()
        if unindexed_only:
            pending = [e for e in pending if e.provisional is None]
        found = [
            (e, v.values)
            for e in pending
            if e.key.scope == key.scope
            and e.key.tenant_id == key.tenant_id
            and e.key.model == key.model
            and (v := of(e)) is not None
            and len(v.values) == dims
        ]
        if not found:
            return []
        matrix = np.stack([values for _, values in found])
        norms = np.linalg.norm(matrix, axis=1) * vector.norm
        products = matrix @ vector.values
        cosines = np.divide(products, norms, out=np.zeros_like(products), where=norms > 0)
        return [(e, c) for (e, _), c in zip(found, cosines.tolist(), strict=True)]

    def _choose(self, key: CacheKey, question: str, rows: list[Any], threshold: float) -> Lookup:
        best = float(rows[0]["similarity"]) if rows else None
        rejected, why = 0, None
        for row in rows:
            similarity = float(row["similarity"])
            if similarity < threshold:
                break
            probability, reason = 1.0, None
            if self._verifier is not None and row["question"] != question:
                verdict = self._verifier.verdict(question, row["question"], similarity)
                own = row["min_probability"]
                floor = self._verifier.min_probability
                reason = verdict.refusal(floor if own is None else max(floor, float(own)))
                if reason is not None and own is not None and verdict.refusal(floor) is None:
                    reason = "tightened"  # the entry's learnt threshold, not the judge's
                probability = verdict.probability
            if reason is None:
                entry_id = None if row["id"] is None else int(row["id"])
                response = json_loads.loads(row["response"])
                entry = (key.tenant_id, key.model, key.scope, str(row["question"]))
                hit = SemanticHit(entry_id, similarity, response, entry, probability)
                return Lookup(hit, best, rejected, why)
            rejected, why = rejected + 1, reason
        return Lookup(None, best, rejected, why)


def _vectors_as_text(params: dict[str, Any]) -> dict[str, Any]:
    """An entry's INSERT parameters with its vectors in pgvector's text form (why text:
    ``db/vectors.py``)."""
    embedding, first = params["embedding"], params["first_vector"]
    return {
        **params,
        "embedding": None if embedding is None else embedding.literal,
        "first_vector": None if first is None else first.literal,
    }


def _first_vector(entry: PendingEntry) -> Embedding | None:
    return entry.first


def _queued_candidate(entry: PendingEntry) -> Candidate:
    return Candidate(None, entry.question, entry.params["response"], entry.embedding, queued=entry)


def _embedder_vector(entry: PendingEntry) -> Embedding | None:
    return entry.embedding


def _outcome(lookup: Lookup) -> str:
    if lookup.hit is not None:
        return "hit"
    return "rejected" if lookup.rejected else "miss"
