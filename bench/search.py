"""Search latency at 100,000 chunks: hybrid (and each side alone) through ``SearchService``.

A synthetic collection is written straight into PostgreSQL: 100,000 chunks of 40 words drawn
from a Zipf distribution over a 30,000-word vocabulary (so BM25 postings look like a real
corpus: a few very common terms, a long tail), each with a 384-dimension unit vector around
one of 500 cluster centres (so HNSW sees structure, as with real embeddings), in 10,000
documents. Queries are 4 words of the mid-frequency band and a vector near a random centre;
the query "embedding" is that vector (no model in the timed path), so the figures are the
database and fusion cost of a search. Each query is timed end to end in this process.
"""

from __future__ import annotations

import time
import uuid

import numpy as np

from bench.document import stamp
from bench.processes import embedded_database
from bench.suite import Options, Section, main_for
from propylon.db.database import Database
from propylon.db.migrator import migrate
from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import Embeddings, JSONObject
from propylon.rag.bm25 import BM25Index
from propylon.rag.chunking import Chunk
from propylon.rag.search import (
    CollectionRef,
    FusionParams,
    Mode,
    SearchRequest,
    SearchService,
)
from propylon.rag.store import CollectionStore, NewChunk

TENANT = "bbbbbbbb-0000-0000-0000-000000000007"
DIMS = 384
WORDS_PER_CHUNK = 40
VOCABULARY = 30_000
CLUSTERS = 500
BATCH = 5_000


class _QueryVectors:
    """The embeddings service of the benchmark: hands out the next prepared query vector."""

    def __init__(self, vectors: np.ndarray) -> None:
        self._vectors = vectors
        self._next = 0

    async def embed(
        self, texts: list[str], request: JSONObject | None = None, call: CallInfo | None = None
    ) -> Embeddings:
        vector = self._vectors[self._next % len(self._vectors)]
        self._next += 1
        return Embeddings([vector.tolist()], prompt_tokens=1)


def _unit(rows: np.ndarray) -> np.ndarray:
    result: np.ndarray = rows / np.linalg.norm(rows, axis=1, keepdims=True)
    return result


async def _populate(
    database: Database, store: CollectionStore, chunks: int, rng: np.random.Generator
) -> tuple[str, np.ndarray]:
    centres = _unit(rng.standard_normal((CLUSTERS, DIMS)))
    async with database.connection() as conn:
        await conn.execute("DELETE FROM collections WHERE tenant_id = %s", (TENANT,))
        cur = await conn.execute(
            "INSERT INTO collections (tenant_id, name, chunking, embedding_model)"
            " VALUES (%s, %s, '{}', 'bench') RETURNING id",
            (TENANT, f"bench-{uuid.uuid4().hex[:6]}"),
        )
        row = await cur.fetchone()
    assert row is not None
    collection_id = str(row["id"])
    ranks = np.arange(1, VOCABULARY + 1)
    weights = 1.0 / ranks
    weights /= weights.sum()
    done = 0
    while done < chunks:
        n = min(BATCH, chunks - done)
        words = rng.choice(VOCABULARY, size=(n, WORDS_PER_CHUNK), p=weights)
        vectors = _unit(
            centres[rng.integers(0, CLUSTERS, n)] + 0.35 * rng.standard_normal((n, DIMS)) / 20
        )
        async with database.connection() as conn:
            documents = []
            for _ in range(max(1, n // 10)):
                cur = await conn.execute(
                    "INSERT INTO documents (collection_id, status, text, metadata)"
                    " VALUES (%s, 'ready', '', %s) RETURNING id",
                    (collection_id, '{"bench": true}'),
                )
                doc = await cur.fetchone()
                assert doc is not None
                documents.append(str(doc["id"]))
            new = [
                NewChunk(
                    document_id=documents[i % len(documents)],
                    chunk=Chunk(
                        ordinal=done + i,
                        start=0,
                        end=len(text),
                        text=text,
                        page=None,
                        page_end=None,
                        heading_path=(),
                        token_count=WORDS_PER_CHUNK,
                    ),
                    vector=vectors[i].tolist(),
                    model_id="bench",
                )
                for i, text in enumerate(" ".join(f"w{w}" for w in row) for row in words)
            ]
            await store.insert_chunks(conn, collection_id, new)
        done += n
    return collection_id, centres


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


async def run(options: Options) -> Section:
    chunks = options.scaled(100_000, 3_000)
    queries = options.scaled(200, 20)
    rng = np.random.default_rng(7)
    bm25 = BM25Index()
    async with embedded_database(options) as url:
        database = Database(url, max_size=4)
        await database.open()
        try:
            await migrate(database)
            started = time.perf_counter()
            collection_id, centres = await _populate(
                database, CollectionStore(database, bm25), chunks, rng
            )
            load_s = time.perf_counter() - started
            query_vectors = _unit(
                centres[rng.integers(0, CLUSTERS, queries)]
                + 0.35 * rng.standard_normal((queries, DIMS)) / 20
            )
            collection = CollectionRef(collection_id, "bench", "bench")
            texts = [" ".join(f"w{w}" for w in rng.integers(50, 2_000, 4)) for _ in range(queries)]
            timings: dict[str, list[float]] = {}
            modes: tuple[Mode, ...] = ("hybrid", "dense", "keyword")
            for mode in modes:
                service = SearchService(
                    database, _QueryVectors(query_vectors), bm25, FusionParams("weighted")
                )
                spent = timings.setdefault(mode, [])
                for text in texts:
                    started = time.perf_counter()
                    hits = await service.search_collections(
                        None, [collection], SearchRequest(text, 10, mode)
                    )
                    spent.append((time.perf_counter() - started) * 1000)
                    assert hits
            async with database.connection() as conn:
                await conn.execute("DELETE FROM collections WHERE id = %s", (collection_id,))
        finally:
            await database.close()
    p95 = _percentile(timings["hybrid"], 95)
    rows = "\n".join(
        f"| {mode} | {_percentile(t, 50):.1f} ms | {_percentile(t, 95):.1f} ms |"
        for mode, t in timings.items()
    )
    markdown = f"""## Search latency

{stamp(options.command)}

{chunks:,} synthetic chunks in one collection ({WORDS_PER_CHUNK} Zipf-distributed words and a
clustered 384-d unit vector each; written in {load_s:.0f} s including the HNSW index and BM25
postings); {queries} queries of 4 mid-frequency words, top 10, timed end to end through
`SearchService` (hybrid = 100 candidates from each side, weighted fusion). The query vector is
precomputed: add the embedding model's time (the bundled MiniLM: a few ms per query) for a
real query.

| mode | p50 | p95 |
|---|---:|---:|
{rows}

Hybrid p95 at {chunks:,} chunks: **{p95:.0f} ms**.
"""
    return Section("search", markdown)


if __name__ == "__main__":
    main_for("bench.search")
