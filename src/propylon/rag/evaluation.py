"""``propylon eval retrieval``: dense, BM25 and hybrid search on a BEIR dataset (SciFact), and
the citation check of answers.

The corpus is ingested one document per abstract (``title + " " + text``, one chunk each —
the setup of the reference figures) straight into the store: documents, chunks with their
MiniLM vectors, and the BM25 postings, in one transaction. Then every query is searched
through ``SearchService`` (the same SQL the HTTP API runs), and nDCG@10, recall@10 and
recall@100 are computed as BEIR does.

Fusion is tuned on the **train** queries only: the dense and BM25 rankings of each train
query are fetched once, then every fusion setting of a small grid is scored on them; the best
is then run once on the test queries, next to the configured default. Test queries never
choose anything.

Citation check: for the test claims with SciFact evidence (the ``metadata`` of
``queries.jsonl``: gold abstracts and their rationale sentence indices), the local extractive
model answers over the collection; an answer passes when a chunk it cites contains a gold
rationale sentence (here: the cited abstract is an evidence abstract, since one chunk holds a
whole abstract), and — stricter — when a quoted sentence *is* a gold rationale sentence
(abstracts are re-split into sentences with ``propylon.local.sentences``, so this alignment
is approximate).
"""

from __future__ import annotations

import json
import platform
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from propylon import report_section
from propylon.db.database import Database
from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import (
    ChatModel,
    ChatStream,
    EmbeddingModel,
    JSONObject,
    ModelEmbeddings,
)
from propylon.local.sentences import split_sentences
from propylon.principal import Principal
from propylon.rag.answer import Answerer, AnswerOptions, AnswerRequest, ModelInfo
from propylon.rag.bm25 import BM25Index
from propylon.rag.bm25_eval import BeirData, Qrels, load_beir, ndcg_at_k
from propylon.rag.chunking import Chunk
from propylon.rag.conversations import ConversationStore
from propylon.rag.retrieval_queries import QUERIES
from propylon.rag.search import (
    CollectionRef,
    FusionParams,
    Ranked,
    SearchRequest,
    SearchService,
    fuse,
)
from propylon.rag.store import CollectionStore, NewChunk
from propylon.tokens import TokenCounter

EVAL_TENANT = "eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee"
EMBEDDING_MODEL = "local/all-MiniLM-L6-v2"
CANDIDATES = 100
REFERENCE_RRF = FusionParams("rrf", 60, 0.5, CANDIDATES)  # the reference figures' fusion
GRID: list[FusionParams] = [
    FusionParams("rrf", k, w, CANDIDATES) for k in (10, 30, 60) for w in (0.3, 0.4, 0.5, 0.6, 0.7)
] + [
    FusionParams(method, 60, w / 20, CANDIDATES)
    for method in ("weighted", "zscore")
    for w in range(4, 17)
]


class _ChatService:
    def __init__(self, model: ChatModel) -> None:
        self._model = model

    async def complete(self, request: JSONObject, call: CallInfo | None = None) -> JSONObject:
        return await self._model.complete(request)

    async def stream(self, request: JSONObject, call: CallInfo | None = None) -> ChatStream:
        return await self._model.stream(request)


@dataclass(frozen=True, slots=True)
class Scores:
    ndcg_at_10: float
    recall_at_10: float
    recall_at_100: float


@dataclass(slots=True)
class Report:
    documents: int
    test_queries: int
    train_queries: int
    dense: Scores
    keyword: Scores
    hybrid_default: Scores
    hybrid_rrf: Scores
    default: FusionParams
    tuned: FusionParams
    tuned_train_ndcg: float
    hybrid_tuned: Scores
    train_grid: list[tuple[FusionParams, float]] = field(default_factory=list)
    citation_answers: int = 0
    citation_doc_hits: int = 0
    citation_sentence_hits: int = 0
    index_s: float = 0.0
    vectors_cached: bool = False
    search_ms_p50: float = 0.0


def evidence(directory: Path) -> dict[str, dict[str, list[int]]]:
    """query id → {gold doc id → rationale sentence indices} (SciFact ``metadata``)."""
    out: dict[str, dict[str, list[int]]] = {}
    with (directory / "queries.jsonl").open(encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            gold: dict[str, list[int]] = {}
            for doc_id, sets in (item.get("metadata") or {}).items():
                for entry in sets:
                    gold.setdefault(doc_id, []).extend(entry.get("sentences", []))
            if gold:
                out[item["_id"]] = gold
    return out


def _has_cache(cache: Path | None) -> bool:
    return cache is not None and cache.is_file()


def _cached_vectors(cache: Path | None, ids: list[str]) -> list[list[float]] | None:
    """The corpus vectors saved by an earlier run, when they are for the same ids."""
    if cache is None or not cache.is_file():
        return None
    with np.load(cache) as saved:
        if [str(i) for i in saved["ids"]] != ids:
            return None
        vectors: list[list[float]] = saved["vectors"].tolist()
        return vectors


def scores(runs: dict[str, list[str]], qrels: Qrels) -> Scores:
    def recall(ranked: Sequence[str], relevant: dict[str, int], k: int) -> float:
        wanted = {doc for doc, gain in relevant.items() if gain > 0}
        return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0

    n = len(qrels)
    return Scores(
        sum(ndcg_at_k(runs.get(q, []), rel) for q, rel in qrels.items()) / n,
        sum(recall(runs.get(q, []), rel, 10) for q, rel in qrels.items()) / n,
        sum(recall(runs.get(q, []), rel, 100) for q, rel in qrels.items()) / n,
    )


async def eval_collection(store: CollectionStore, purpose: str) -> CollectionRef:
    """A temporary collection of the evaluation tenant, one chunk per document."""
    created = await store.create_collection(
        {
            "tenant_id": EVAL_TENANT,
            "name": f"eval-{purpose}-{uuid.uuid4().hex[:8]}",
            "description": f"temporary: propylon eval {purpose}",
            "chunking": {"max_tokens": 100_000, "overlap_tokens": 0},
            "embedding_model": EMBEDDING_MODEL,
            "metadata": {},
        }
    )
    assert created is not None
    return CollectionRef(str(created["id"]), str(created["name"]), EMBEDDING_MODEL)


async def corpus_vectors(
    corpus: dict[str, str],
    embedder: EmbeddingModel,
    *,
    batch: int = 64,
    cache: Path | None = None,
) -> list[list[float]]:
    """One vector per corpus entry, in order: those ``cache`` holds for the same ids, else
    embedded (and saved to ``cache``)."""
    ids = list(corpus)
    vectors = _cached_vectors(cache, ids)
    if vectors is None:
        vectors = []
        for start in range(0, len(ids), batch):
            texts = [corpus[i] for i in ids[start : start + batch]]
            vectors += (await embedder.embed(texts)).vectors
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cache, ids=np.array(ids), vectors=np.asarray(vectors, dtype=np.float32))
    return vectors


async def index(
    database: Database,
    store: CollectionStore,
    collection_id: str,
    corpus: dict[str, str],
    vectors: list[list[float]],
) -> dict[int, str]:
    """One document with one BM25-indexed chunk per corpus entry, with its vector
    (``corpus_vectors``)."""
    ids = list(corpus)
    async with database.connection() as conn:
        new: list[NewChunk] = []
        for doc_id, vector in zip(ids, vectors, strict=True):
            text = corpus[doc_id]
            document = await store.insert_document(
                conn,
                {
                    "collection_id": collection_id,
                    "external_id": doc_id,
                    "filename": None,
                    "media_type": "text/plain",
                    "size_bytes": len(text.encode()),
                    "metadata": {},
                },
            )
            await conn.execute(
                QUERIES["eval_document_ready"], {"document_id": document["id"], "text": text}
            )
            _, length = store.bm25.term_counts(text)
            chunk = Chunk(0, 0, len(text), text, None, None, (), length)
            new.append(NewChunk(str(document["id"]), chunk, vector, EMBEDDING_MODEL))
        chunk_ids = await store.insert_chunks(conn, collection_id, new)
    return dict(zip(chunk_ids, ids, strict=True))


async def evaluate(
    database: Database,
    directory: Path,
    embedder: EmbeddingModel,
    chat: ChatModel,
    *,
    default: FusionParams,
    citation_queries: int | None = None,
    progress: Any = None,
    cache: Path | None = None,
) -> Report:
    say = progress or (lambda message: None)
    test = load_beir(directory, split="test")
    train = load_beir(directory, split="train")
    bm25 = BM25Index()
    store = CollectionStore(database, bm25)
    collection = await eval_collection(store, "retrieval")
    search = SearchService(database, ModelEmbeddings(embedder), bm25, default)
    try:
        say(f"indexing {len(test.corpus)} abstracts (MiniLM vectors + BM25)…")
        cached = _has_cache(cache)
        started = time.perf_counter()
        vectors = await corpus_vectors(test.corpus, embedder, cache=cache)
        chunk_to_doc = await index(database, store, collection.id, test.corpus, vectors)
        index_s = time.perf_counter() - started
        say(f"indexed in {index_s:.0f} s; ranking {len(train.queries)} train queries…")
        train_runs = await _rankings(search, collection, train)
        grid = [
            (params, _fused_scores(train_runs, chunk_to_doc, train.qrels, params).ndcg_at_10)
            for params in GRID
        ]
        tuned, tuned_ndcg = max(grid, key=lambda item: item[1])
        say(f"tuned on train: {tuned} (nDCG@10 {tuned_ndcg:.4f}); ranking test queries…")
        started = time.perf_counter()
        test_runs = await _rankings(search, collection, test)
        per_query_ms = (time.perf_counter() - started) * 1000 / max(1, len(test.queries))

        def docs(ranked: Ranked) -> list[str]:
            return [chunk_to_doc[c] for c, _ in ranked]

        report = Report(
            documents=len(test.corpus),
            test_queries=len(test.queries),
            train_queries=len(train.queries),
            dense=scores({q: docs(d) for q, (d, _) in test_runs.items()}, test.qrels),
            keyword=scores({q: docs(k) for q, (_, k) in test_runs.items()}, test.qrels),
            hybrid_default=_fused_scores(test_runs, chunk_to_doc, test.qrels, default),
            hybrid_rrf=_fused_scores(test_runs, chunk_to_doc, test.qrels, REFERENCE_RRF),
            default=default,
            tuned=tuned,
            tuned_train_ndcg=tuned_ndcg,
            hybrid_tuned=_fused_scores(test_runs, chunk_to_doc, test.qrels, tuned),
            train_grid=grid,
            index_s=index_s,
            vectors_cached=cached,
            search_ms_p50=per_query_ms,
        )
        say("citation check on test claims with evidence…")
        await _citation_check(
            report, database, search, chat, collection, test, directory, tuned, citation_queries
        )
        return report
    finally:
        await store.delete_collection(EVAL_TENANT, collection.id)


async def _rankings(
    search: SearchService, collection: CollectionRef, data: BeirData
) -> dict[str, tuple[Ranked, Ranked]]:
    out: dict[str, tuple[Ranked, Ranked]] = {}
    for query_id, query in data.queries.items():
        out[query_id] = await search.rankings(
            None, [collection], SearchRequest(query, CANDIDATES, "hybrid"), CANDIDATES
        )
    return out


def _fused_scores(
    runs: dict[str, tuple[Ranked, Ranked]],
    chunk_to_doc: dict[int, str],
    qrels: Qrels,
    params: FusionParams,
) -> Scores:
    fused = {
        q: [chunk_to_doc[c] for c, _ in fuse(dense, keyword, params)[:CANDIDATES]]
        for q, (dense, keyword) in runs.items()
    }
    return scores(fused, qrels)


async def _citation_check(
    report: Report,
    database: Database,
    search: SearchService,
    chat: ChatModel,
    collection: CollectionRef,
    data: BeirData,
    directory: Path,
    fusion: FusionParams,
    limit: int | None,
) -> None:
    gold = evidence(directory)
    search.fusion = fusion
    abstracts = _abstracts(directory)
    answerer = Answerer(
        database,
        search,
        _ChatService(chat),
        ConversationStore(database),
        TokenCounter(),
        lambda name: ModelInfo(name, 8192, "extractive", local=True),
        AnswerOptions(top_k=5),
    )
    principal = Principal(tenant_id=EVAL_TENANT, tenant_name="eval")
    queries = [q for q in data.queries if q in gold]
    if limit is not None:
        queries = queries[:limit]
    for query_id in queries:
        result = await answerer.answer(
            principal, AnswerRequest(collection.id, data.queries[query_id])
        )
        report.citation_answers += 1
        cited_docs = {c["external_id"] for c in result["citations"]}
        if cited_docs & set(gold[query_id]):
            report.citation_doc_hits += 1
        for citation in result["citations"]:
            doc_id = citation["external_id"]
            if doc_id not in gold[query_id] or not citation["quote"]:
                continue
            sentences = abstracts.get(doc_id, [])
            golds = {sentences[i] for i in gold[query_id][doc_id] if i < len(sentences)}
            if any(_same(citation["quote"], sentence) for sentence in golds):
                report.citation_sentence_hits += 1
                break


def _same(quote: str, sentence: str) -> bool:
    a, b = " ".join(quote.split()), " ".join(sentence.split())
    return bool(a) and (a in b or b in a)


def _abstracts(directory: Path) -> dict[str, list[str]]:
    import gzip

    out: dict[str, list[str]] = {}
    with gzip.open(directory / "corpus.jsonl.gz", "rt", encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            text = item["text"]
            out[item["_id"]] = [text[s:e] for s, e in split_sentences(text)]
    return out


def render_markdown(report: Report, command: str) -> str:
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    goal = 0.74

    def row(name: str, s: Scores, reference: str) -> str:
        return (
            f"| {name} | {s.ndcg_at_10:.4f} | {s.recall_at_10:.4f} | {s.recall_at_100:.4f} "
            f"| {reference} |"
        )

    tuned = report.tuned
    hybrid = report.hybrid_tuned.ndcg_at_10
    met = "met" if hybrid >= goal else "**missed**"
    lines = [
        "## Retrieval quality",
        "",
        f"Measured {now} on {platform.processor() or platform.machine()}, Python "
        f"{platform.python_version()}, with `{command}`: BEIR SciFact, {report.documents:,} "
        f"abstracts ingested one document (one chunk) each with all-MiniLM-L6-v2 vectors "
        f"(pgvector HNSW, cosine) and the PostgreSQL BM25 index; {report.test_queries} test "
        f"queries. Fusion tuned on the {report.train_queries} **train** queries only.",
        "",
        "| search | nDCG@10 | recall@10 | recall@100 | reference (elsewhere) |",
        "|---|---:|---:|---:|---|",
        row("dense (MiniLM, cosine)", report.dense, "MiniLM 0.645"),
        row("keyword (BM25)", report.keyword, "BM25 0.686"),
        row(f"hybrid, {_describe(REFERENCE_RRF)}", report.hybrid_rrf, "RRF 0.717"),
        row(f"hybrid, configured default ({_describe(report.default)})", report.hybrid_default, ""),
        row(f"hybrid, tuned on train ({_describe(tuned)})", report.hybrid_tuned, "goal ≥ 0.74"),
        "",
        f"Goal hybrid nDCG@10 ≥ {goal}: {met} ({hybrid:.4f}). The tuned setting scored "
        f"{report.tuned_train_ndcg:.4f} on train. Indexing took {report.index_s:.0f} s "
        + (
            "(vectors from an earlier run's cache)"
            if report.vectors_cached
            else "(embedding included)"
        )
        + "; one query's dense + BM25 rankings took "
        + f"{report.search_ms_p50:.0f} ms on average.",
        "",
    ]
    if hybrid < goal:
        lines += [
            "Why the goal is missed: both rankers are fixed (BM25 as specified, MiniLM as "
            "shipped), and no fusion setting on train gets further than about +0.045 over "
            "BM25 alone — RRF, min-max and z-score fusion all plateau near 0.73 on train. "
            "Closing the gap needs a better ranker on one side, not better fusion: not tried "
            "yet are passage-level dense vectors (MiniLM reads only the first 256 word pieces "
            "of an abstract; max-pooling over 2-3 passages per abstract) and a cross-encoder "
            "reranker over the fused top 20.",
            "",
        ]
    best = {
        method: max((i for i in report.train_grid if i[0].method == method), key=lambda i: i[1])
        for method in ("rrf", "weighted", "zscore")
    }
    lines += [
        f"Train grid ({len(report.train_grid)} settings), best train nDCG@10 per method: "
        + "; ".join(f"{_describe(p)}: {score:.4f}" for p, score in best.values())
        + ".",
        "",
    ]
    if report.citation_answers:
        n = report.citation_answers
        lines += [
            f"**Citation check** ({n} test claims with SciFact rationales, answered by "
            "`local/extractive` over the top 5 hybrid hits): answers whose cited chunks contain "
            f"a gold rationale sentence: **{report.citation_doc_hits / n:.1%}** "
            f"({report.citation_doc_hits}/{n}; one chunk is one abstract here, so this is "
            '"cited a gold abstract"); answers quoting a gold rationale sentence itself: '
            f"{report.citation_sentence_hits / n:.1%} ({report.citation_sentence_hits}/{n}; "
            "sentence boundaries re-split, approximate).",
            "",
        ]
    return "\n".join(lines)


def _describe(params: FusionParams) -> str:
    if params.method == "rrf":
        return f"RRF k={params.rrf_k}, dense weight {params.dense_weight:g}"
    return f"{params.method}, dense weight {params.dense_weight:g}"


def configured_fusion(settings: Any) -> FusionParams:
    """The fusion ``retrieval`` is configured with (what the evaluations measure)."""
    config = settings.retrieval
    return FusionParams(config.fusion, config.rrf_k, config.dense_weight, CANDIDATES)


def vectors_cache(settings: Any, dataset: Path, *, int8: bool = False) -> Path:
    """Where the MiniLM vectors of ``dataset``'s corpus are kept between runs (and between
    the evaluations that index it)."""
    model = "minilm-int8" if int8 else "minilm"
    return Path(settings.data_dir) / "eval" / f"{dataset.name}-{model}-vectors.npz"


async def run(
    settings: Any,
    dataset: Path,
    *,
    threads: int = 2,
    int8: bool = False,
    citation_queries: int | None = None,
    progress: Any = None,
) -> Report:
    """Open the configured database (migrated), load the local models, evaluate."""
    from propylon.db.connect import open_database
    from propylon.db.migrator import migrate
    from propylon.local.extractive import ExtractiveChatModel
    from propylon.local.minilm import MiniLMEmbedder

    embedder = MiniLMEmbedder.load(threads=threads, max_batch=32, int8=int8)
    try:
        async with open_database(settings) as database:
            await migrate(database)
            return await evaluate(
                database,
                dataset,
                embedder,
                ExtractiveChatModel(embedder),
                default=configured_fusion(settings),
                citation_queries=citation_queries,
                progress=progress,
                cache=vectors_cache(settings, dataset, int8=int8),
            )
    finally:
        embedder.close()


START, END = "<!-- eval:retrieval:start -->", "<!-- eval:retrieval:end -->"


def write_section(path: Path, section: str) -> None:
    """Put ``section`` between this evaluation's markers in ``path``; the rest of the file
    (other sections, hand-written prose) is kept. Appended when the markers are absent."""
    report_section.replace_between(path, section, START, END)
