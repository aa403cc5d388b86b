"""``propylon eval rerank``: what the built-in ``local/minilm-rerank`` adds to hybrid search.

SciFact **test** claims (never used to choose anything here: the fusion is the configured
default, tuned on train claims by ``propylon eval retrieval``; the reranker has no parameter
fitted on them; ``candidates`` is the ``retrieval.rerank_candidates`` default), 5,183
abstracts ingested as ``propylon eval retrieval`` ingests them (one chunk each, MiniLM
vectors, PostgreSQL BM25). First stage: the production hybrid search (``SearchService``,
``mode: hybrid``). Second stage: the same ``SearchService`` with ``LocalReranker`` as its
reranker, exactly as ``retrieval.reranker`` runs it. Both are scored with BEIR's nDCG@10 and
recall@10 on the same claims, overall and by claim length (split at the median word
count), so the difference is the reranker's alone.

The reranker embeds each candidate abstract again; here it is handed the vectors the index
was built with (the same model on the same text), so one run costs one embedding pass of the
corpus (cached in ``data_dir/eval``, shared with ``eval retrieval``) instead of twenty per
claim.
"""

from __future__ import annotations

import platform
import statistics
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from propylon import report_section
from propylon.db.database import Database
from propylon.gateway.protocol import EmbeddingModel, ModelEmbeddings, ModelRanking
from propylon.local.extractive_eval import CachedEmbedder
from propylon.local.reranker import MODEL_ID, LocalReranker
from propylon.rag.bm25 import BM25Index
from propylon.rag.bm25_eval import Qrels, load_beir, ndcg_at_k
from propylon.rag.evaluation import (
    EVAL_TENANT,
    configured_fusion,
    corpus_vectors,
    eval_collection,
    index,
    vectors_cache,
)
from propylon.rag.search import (
    FusionParams,
    RerankParams,
    SearchRequest,
    SearchService,
)
from propylon.rag.store import CollectionStore

START, END = "<!-- eval:rerank:start -->", "<!-- eval:rerank:end -->"


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    queries: int
    first_ndcg: float
    reranked_ndcg: float
    first_recall: float
    reranked_recall: float


@dataclass(frozen=True, slots=True)
class RerankReport:
    documents: int
    candidates: int
    rows: list[Row]
    rerank_ms: float  # per claim, mean
    median_words: float
    fusion: FusionParams


def _recall(ranked: list[str], relevant: dict[str, int], k: int = 10) -> float:
    wanted = {doc for doc, gain in relevant.items() if gain > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def _row(
    name: str, ids: list[str], first: dict[str, list[str]], second: dict[str, list[str]], q: Qrels
) -> Row:
    n = max(1, len(ids))
    return Row(
        name,
        len(ids),
        sum(ndcg_at_k(first[i], q[i]) for i in ids) / n,
        sum(ndcg_at_k(second[i], q[i]) for i in ids) / n,
        sum(_recall(first[i], q[i]) for i in ids) / n,
        sum(_recall(second[i], q[i]) for i in ids) / n,
    )


async def evaluate(
    database: Database,
    directory: Path,
    embedder: EmbeddingModel,
    *,
    fusion: FusionParams,
    candidates: int = 20,
    queries: int | None = None,
    cache: Path | None = None,
    progress: Any = None,
) -> RerankReport:
    say = progress or (lambda message: None)
    data = load_beir(directory, split="test")
    chosen = [q for q in data.queries if q in data.qrels][:queries]
    cached = CachedEmbedder(embedder)
    bm25 = BM25Index()
    store = CollectionStore(database, bm25)
    collection = await eval_collection(store, "rerank")
    try:
        say(f"indexing {len(data.corpus)} abstracts (MiniLM vectors + BM25)…")
        vectors = await corpus_vectors(data.corpus, embedder, cache=cache)
        chunk_to_doc = await index(database, store, collection.id, data.corpus, vectors)
        cached.remember(dict(zip(data.corpus.values(), vectors, strict=True)))
        plain = SearchService(database, ModelEmbeddings(cached), bm25, fusion)
        reranking = SearchService(
            database,
            ModelEmbeddings(cached),
            bm25,
            fusion,
            reranker=ModelRanking(LocalReranker(cached)),
            rerank=RerankParams(MODEL_ID, candidates),
        )
        first: dict[str, list[str]] = {}
        second: dict[str, list[str]] = {}
        spent = 0.0
        for number, query_id in enumerate(chosen, 1):
            request = SearchRequest(data.queries[query_id], 10, "hybrid")
            hits = await plain.search_collections(None, [collection], request)
            first[query_id] = [chunk_to_doc[hit.chunk_id] for hit in hits]
            started = time.perf_counter()
            hits = await reranking.search_collections(None, [collection], request)
            spent += time.perf_counter() - started
            second[query_id] = [chunk_to_doc[hit.chunk_id] for hit in hits]
            if number % 50 == 0:
                say(f"{number}/{len(chosen)} claims searched")
    finally:
        await store.delete_collection(EVAL_TENANT, collection.id)
    words = {q: len(data.queries[q].split()) for q in chosen}
    median = statistics.median(words.values()) if words else 0.0
    short = [q for q in chosen if words[q] <= median]
    long = [q for q in chosen if words[q] > median]
    return RerankReport(
        documents=len(data.corpus),
        candidates=candidates,
        rows=[
            _row("all claims", chosen, first, second, data.qrels),
            _row(f"short claims (≤ {median:g} words)", short, first, second, data.qrels),
            _row(f"long claims (> {median:g} words)", long, first, second, data.qrels),
        ],
        rerank_ms=spent * 1000 / max(1, len(chosen)),
        median_words=median,
        fusion=fusion,
    )


def render_markdown(report: RerankReport, command: str) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Reranking (`local/minilm-rerank`)",
        "",
        f"Measured {when} on {platform.machine()}, Python {platform.python_version()}, with "
        f"`{command}`: SciFact **test** claims against {report.documents:,} abstracts. First "
        f"stage: the production hybrid search (pgvector + PostgreSQL BM25, "
        f"{report.fusion.method} fusion, dense weight {report.fusion.dense_weight:g}: the "
        f"configured default, tuned on train claims); second stage: the built-in reranker "
        f"over the best {report.candidates} hits, as `retrieval.reranker` runs it. Nothing "
        "was tuned on these claims.",
        "",
        "| claims | n | nDCG@10 hybrid | nDCG@10 + reranker "
        "| recall@10 hybrid | recall@10 + reranker |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report.rows:
        lines.append(
            f"| {row.name} | {row.queries} | {row.first_ndcg:.4f} | {row.reranked_ndcg:.4f} "
            f"| {row.first_recall:.4f} | {row.reranked_recall:.4f} |"
        )
    lines += [
        "",
        f"Hybrid search plus reranking took {report.rerank_ms:,.0f} ms per claim on average "
        "here, with the candidates' vectors reused from the index (in service the reranker "
        f"embeds the claim and all {report.candidates} candidates on every call).",
    ]
    return "\n".join(lines)


async def run(
    settings: Any,
    dataset: Path,
    *,
    threads: int = 2,
    candidates: int = 20,
    queries: int | None = None,
    progress: Any = None,
) -> RerankReport:
    """Open the configured database (migrated), load MiniLM, evaluate."""
    from propylon.db.connect import open_database
    from propylon.db.migrator import migrate
    from propylon.local.minilm import MiniLMEmbedder

    embedder = MiniLMEmbedder.load(threads=threads, max_batch=32)
    try:
        async with open_database(settings) as database:
            await migrate(database)
            return await evaluate(
                database,
                dataset,
                embedder,
                fusion=configured_fusion(settings),
                candidates=candidates,
                queries=queries,
                cache=vectors_cache(settings, dataset),
                progress=progress,
            )
    finally:
        embedder.close()


def write_section(path: Path, section: str) -> None:
    report_section.replace_between(path, section, START, END)
