"""``propylon eval rerank``: what the built-in ``local/minilm-rerank`` does to a ranking.

SciFact **test** claims (never used to choose anything here; the reranker has no parameter
fitted on them), 5,183 abstracts. First stage: Okapi BM25 over the whole corpus with the
same analyser the reranker uses (``local.sentences``), top ``candidates`` per claim. Second
stage: ``LocalReranker`` over those candidates, exactly as ``retrieval.reranker`` calls it.
Both are scored with BEIR's nDCG@10 and recall@10 on the same claims, overall and by claim
length (split at the median word count), so the difference is the reranker's alone.

The first stage is not the production hybrid (pgvector + PostgreSQL BM25): that needs MiniLM
vectors of the whole corpus, which the shared evaluation machine cannot afford in one
sitting; the reranker's effect on top of the hybrid remains unmeasured (see
docs/benchmarks.md).
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
from propylon.gateway.protocol import EmbeddingModel
from propylon.local.reranker import LocalReranker
from propylon.local.sentences import bm25_scores, terms
from propylon.rag.bm25_eval import Qrels, load_beir, ndcg_at_k

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
    directory: Path,
    embedder: EmbeddingModel,
    *,
    candidates: int = 20,
    queries: int | None = None,
    progress: Any = None,
) -> RerankReport:
    say = progress or (lambda message: None)
    data = load_beir(directory, split="test")
    ids = list(data.corpus)
    corpus_terms = [terms(data.corpus[i]) for i in ids]
    chosen = [q for q in data.queries if q in data.qrels][:queries]
    reranker = LocalReranker(embedder)
    first: dict[str, list[str]] = {}
    second: dict[str, list[str]] = {}
    spent = 0.0
    for number, query_id in enumerate(chosen, 1):
        query = data.queries[query_id]
        scores = bm25_scores(terms(query), corpus_terms)
        best = sorted(range(len(ids)), key=lambda i: (-scores[i], i))[:candidates]
        first[query_id] = [ids[i] for i in best]
        started = time.perf_counter()
        ranking = await reranker.rerank(query, [data.corpus[ids[i]] for i in best])
        spent += time.perf_counter() - started
        second[query_id] = [first[query_id][index] for index, _ in ranking.results]
        if number % 10 == 0:
            say(f"{number}/{len(chosen)} claims reranked")
    words = {q: len(data.queries[q].split()) for q in chosen}
    median = statistics.median(words.values()) if words else 0.0
    short = [q for q in chosen if words[q] <= median]
    long = [q for q in chosen if words[q] > median]
    return RerankReport(
        documents=len(ids),
        candidates=candidates,
        rows=[
            _row("all claims", chosen, first, second, data.qrels),
            _row(f"short claims (≤ {median:g} words)", short, first, second, data.qrels),
            _row(f"long claims (> {median:g} words)", long, first, second, data.qrels),
        ],
        rerank_ms=spent * 1000 / max(1, len(chosen)),
        median_words=median,
    )


def render_markdown(report: RerankReport, command: str) -> str:
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Reranking (`local/minilm-rerank`)",
        "",
        f"Measured {when} on {platform.machine()}, Python {platform.python_version()}, with "
        f"`{command}`: SciFact **test** claims against {report.documents:,} abstracts. First "
        f"stage: Okapi BM25 (the `local.sentences` analyser), top {report.candidates}; second "
        "stage: the built-in reranker over those candidates, as `retrieval.reranker` calls it. "
        "Nothing was tuned on these claims.",
        "",
        "| claims | n | nDCG@10 BM25 | nDCG@10 reranked | recall@10 BM25 | recall@10 reranked |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in report.rows:
        lines.append(
            f"| {row.name} | {row.queries} | {row.first_ndcg:.4f} | {row.reranked_ndcg:.4f} "
            f"| {row.first_recall:.4f} | {row.reranked_recall:.4f} |"
        )
    lines += [
        "",
        f"Reranking took {report.rerank_ms:,.0f} ms per claim on average (MiniLM embeds the "
        f"claim and its {report.candidates} candidates on every call; no vector is reused).",
    ]
    return "\n".join(lines)


async def run(
    dataset: Path,
    *,
    threads: int = 2,
    candidates: int = 20,
    queries: int | None = None,
    progress: Any = None,
) -> RerankReport:
    from propylon.local.minilm import MiniLMEmbedder

    embedder = MiniLMEmbedder.load(threads=threads, max_batch=32)
    try:
        return await evaluate(
            dataset, embedder, candidates=candidates, queries=queries, progress=progress
        )
    finally:
        embedder.close()


def write_section(path: Path, section: str) -> None:
    report_section.replace_between(path, section, START, END)
