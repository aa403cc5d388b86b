"""``propylon eval bm25``: our PostgreSQL BM25 against ``bm25s`` on a BEIR dataset (SciFact).

Each corpus entry (title + " " + text) is indexed as one chunk, through the same analyser,
tables and SQL that ingestion and search use; the test queries are run through
``BM25Index.search`` and scored with nDCG@10 as BEIR does. ``bm25s`` (a dev dependency) is run
on the same texts with the same settings (Lucene variant, k1 = 1.5, b = 0.75, English stop
words, Snowball stems) when it is installed, so the two figures can be compared.
"""

from __future__ import annotations

import gzip
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from propylon.db.database import Database
from propylon.rag.bm25 import BM25Index, BM25Params
from propylon.rag.chunking import Chunk
from propylon.rag.queries import QUERIES
from propylon.rag.store import CollectionStore, NewChunk

EVAL_TENANT = "ffffffff-ffff-ffff-ffff-ffffffffffff"
Qrels = dict[str, dict[str, int]]


@dataclass(frozen=True, slots=True)
class BeirData:
    corpus: dict[str, str]  # doc id -> title + " " + text
    queries: dict[str, str]
    qrels: Qrels


@dataclass(frozen=True, slots=True)
class BM25Report:
    documents: int
    queries: int
    ndcg_at_10: float
    bm25s_ndcg_at_10: float | None
    index_s: float
    search_s: float

    @property
    def difference(self) -> float | None:
        if self.bm25s_ndcg_at_10 is None:
            return None
        return abs(self.ndcg_at_10 - self.bm25s_ndcg_at_10)


def load_beir(
    directory: Path, *, split: str = "test", max_documents: int | None = None
) -> BeirData:
    """The dataset, optionally cut to ``max_documents``: every judged document is kept, then
    others in corpus order, so the queries keep their answers."""
    qrels: Qrels = {}
    with (directory / "qrels" / f"{split}.tsv").open(encoding="utf-8") as lines:
        next(lines)
        for line in lines:
            query_id, doc_id, score = line.rstrip("\n").split("\t")
            qrels.setdefault(query_id, {})[doc_id] = int(score)
    queries: dict[str, str] = {}
    with (directory / "queries.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            if item["_id"] in qrels:
                queries[item["_id"]] = item["text"]
    judged = {doc for docs in qrels.values() for doc in docs}
    corpus: dict[str, str] = {}
    others: dict[str, str] = {}
    with gzip.open(directory / "corpus.jsonl.gz", "rt", encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            text = f"{item.get('title', '')} {item['text']}".strip()
            (corpus if item["_id"] in judged else others)[item["_id"]] = text
    for doc_id, text in others.items():
        if max_documents is not None and len(corpus) >= max_documents:
            break
        corpus[doc_id] = text
    return BeirData(corpus, queries, qrels)


def ndcg_at_k(ranked: Sequence[str], relevant: dict[str, int], k: int = 10) -> float:
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted(relevant.values(), reverse=True)[:k]
    idcg = sum(gain / math.log2(i + 2) for i, gain in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def mean_ndcg(runs: dict[str, list[str]], qrels: Qrels) -> float:
    return sum(ndcg_at_k(runs.get(q, []), rel) for q, rel in qrels.items()) / len(qrels)


async def evaluate_bm25(
    database: Database, data: BeirData, *, params: BM25Params | None = None, compare: bool = True
) -> BM25Report:
    """Index ``data`` in a throw-away collection, search it, and compare with ``bm25s``."""
    bm25 = BM25Index(params=params)
    async with throwaway_collection(database, bm25, "bm25") as (store, collection_id):
        started = time.perf_counter()
        chunk_to_doc = await index_corpus(store, collection_id, data.corpus)
        index_s = time.perf_counter() - started
        started = time.perf_counter()
        runs: dict[str, list[str]] = {}
        async with database.connection() as conn:
            for query_id, query in data.queries.items():
                hits = await bm25.search(conn, collection_id, query, limit=10)
                runs[query_id] = [chunk_to_doc[hit.chunk_id] for hit in hits]
        search_s = time.perf_counter() - started
    reference = bm25s_ndcg(data, params or BM25Params()) if compare else None
    return BM25Report(
        documents=len(data.corpus),
        queries=len(data.queries),
        ndcg_at_10=mean_ndcg(runs, data.qrels),
        bm25s_ndcg_at_10=reference,
        index_s=index_s,
        search_s=search_s,
    )


@asynccontextmanager
async def throwaway_collection(
    database: Database, bm25: BM25Index, purpose: str
) -> AsyncIterator[tuple[CollectionStore, str]]:
    """A collection of the evaluations' tenant for one run, deleted after it: its store and
    id."""
    store = CollectionStore(database, bm25)
    created = await store.create_collection(
        {
            "tenant_id": EVAL_TENANT,
            "name": f"eval-{purpose}-{uuid.uuid4().hex[:8]}",
            "description": f"temporary: propylon eval {purpose}",
            "chunking": {"max_tokens": 100_000, "overlap_tokens": 0},
            "embedding_model": "none",
            "metadata": {},
        }
    )
    assert created is not None
    collection_id = str(created["id"])
    try:
        yield store, collection_id
    finally:
        await store.delete_collection(EVAL_TENANT, collection_id)


async def index_corpus(
    store: CollectionStore, collection_id: str, corpus: Mapping[str, str | Sequence[str]]
) -> dict[int, str]:
    """One document per corpus entry, with one chunk per text (a string: one chunk), in a
    single transaction; chunk id -> corpus id."""
    owners: list[str] = []
    async with store.database.connection() as conn:
        new: list[NewChunk] = []
        for doc_id, entry in corpus.items():
            texts = [entry] if isinstance(entry, str) else list(entry)
            document = await store.insert_document(
                conn,
                {
                    "collection_id": collection_id,
                    "external_id": doc_id,
                    "filename": None,
                    "media_type": "text/plain",
                    "size_bytes": sum(len(text) for text in texts),
                    "metadata": {},
                },
            )
            for ordinal, text in enumerate(texts):
                _, length = store.bm25.term_counts(text)
                chunk = Chunk(ordinal, 0, len(text), text, None, None, (), length)
                new.append(NewChunk(str(document["id"]), chunk))
                owners.append(doc_id)
        ids = await store.insert_chunks(conn, collection_id, new)
    chunk_to_doc = dict(zip(ids, owners, strict=True))
    async with store.database.connection() as conn:
        await conn.execute(QUERIES["bm25_analyze"])
    return chunk_to_doc


def bm25s_ndcg(data: BeirData, params: BM25Params) -> float | None:
    """nDCG@10 of ``bm25s`` on the same texts, or ``None`` when it is not installed."""
    try:
        import bm25s
        import Stemmer
    except ImportError:
        return None
    doc_ids = list(data.corpus)
    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(method="lucene", k1=params.k1, b=params.b)
    retriever.index(
        bm25s.tokenize(
            list(data.corpus.values()), stopwords="en", stemmer=stemmer, show_progress=False
        ),
        show_progress=False,
    )
    query_ids = list(data.queries)
    tokens = bm25s.tokenize(
        [data.queries[q] for q in query_ids], stopwords="en", stemmer=stemmer, show_progress=False
    )
    results, _ = retriever.retrieve(tokens, k=10, show_progress=False, n_threads=1)
    runs = {q: [doc_ids[int(i)] for i in results[n]] for n, q in enumerate(query_ids)}
    return mean_ndcg(runs, data.qrels)
