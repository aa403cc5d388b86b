"""Ingestion: documents/s and chunks/s end to end against the embedder's own throughput on the
same texts, and PDF parsing pages/s.

In one process, on the run's PostgreSQL: each SciFact abstract (title + text) is uploaded as a
plain-text document through ``CollectionService.add_document`` (sha256 dedupe, upload row,
job row) and its job is run by ``IngestionHandler`` (parse, chunk, embed with the bundled
MiniLM, store chunks, vectors and BM25 postings in one transaction). The baseline embeds the
very same chunk texts with the same MiniLM, batched as the embedder likes best, with nothing
else around it. Overhead = pipeline time / embedder time − 1. The worker process, the job
queue's polling and HTTP are not included: they cost the same whatever the pipeline does.
"""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.document import stamp
from bench.processes import embedded_database
from bench.suite import Options, Section, main_for
from propylon.db.database import Database
from propylon.db.migrator import migrate
from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import Embeddings, JSONObject
from propylon.local.minilm import MiniLMEmbedder
from propylon.rag.bm25_eval import evaluate_bm25, load_beir
from propylon.rag.chunking import Chunker, ChunkingConfig
from propylon.rag.collections import CollectionDefaults, CollectionService
from propylon.rag.embedding import ChunkEmbedder
from propylon.rag.engine import build_store, token_counter
from propylon.rag.ingest import IngestionHandler
from propylon.rag.parsing import extract
from propylon.settings import JobsSettings, RagSettings

SCIFACT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "scifact"
TENANT = "eeeeeeee-eeee-eeee-eeee-eeeeeeeeeeee"
BATCH = 64
CONCURRENCY = JobsSettings().concurrency  # jobs one `propylon worker` runs at once


class _Direct:
    """The MiniLM as an ``EmbeddingService`` (the gateway's local deployment, minus routing)."""

    def __init__(self, embedder: MiniLMEmbedder) -> None:
        self._embedder = embedder

    async def embed(
        self, texts: list[str], request: JSONObject | None = None, call: CallInfo | None = None
    ) -> Embeddings:
        return await self._embedder.embed(texts)


@dataclass
class _Jobs:
    payloads: list[dict[str, Any]]

    async def enqueue(self, *, payload: dict[str, Any], **_: Any) -> str:
        self.payloads.append(payload)
        return str(uuid.uuid4())


@dataclass
class _Context:
    payload: dict[str, Any]
    job_id: str = ""
    tenant_id: str = TENANT
    kind: str = "rag.ingest"
    collection_id: str | None = None
    attempt: int = 1

    async def progress(self, **_: Any) -> None:
        return None

    def cancelled(self) -> bool:
        return False

    async def raise_if_cancelled(self) -> None:
        return None

    async def complete_in(self, conn: Any, result: dict[str, Any] | None = None) -> None:
        return None


def _abstracts(count: int) -> list[str]:
    if not (SCIFACT / "corpus.jsonl.gz").is_file():
        return [
            f"Document {i}. " + "Sentences about a topic of science. " * 60 for i in range(count)
        ]
    texts: list[str] = []
    with gzip.open(SCIFACT / "corpus.jsonl.gz", "rt", encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            texts.append(f"{item['title']}\n\n{item['text']}")
            if len(texts) == count:
                break
    return texts


def _pdf(pages: int) -> bytes:
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfgen import canvas

    buffer = io.BytesIO()
    page_canvas = canvas.Canvas(buffer, pagesize=A4)
    line = "Propylon parses this page of a long report, one of many, to measure pages per second."
    for number in range(pages):
        page_canvas.drawString(72, 800, "Annual report — running header")
        text = page_canvas.beginText(72, 760)
        for _ in range(45):
            text.textLine(line)
        page_canvas.drawText(text)
        page_canvas.drawString(280, 30, f"Page {number + 1}")
        page_canvas.showPage()
    page_canvas.save()
    return buffer.getvalue()


async def _pipeline(
    database: Database, embedder: MiniLMEmbedder, texts: list[str], concurrency: int
) -> tuple[float, int]:
    """Upload and ingest ``texts`` as a worker does: ``concurrency`` jobs at once."""
    settings = RagSettings()
    handler = IngestionHandler(
        build_store(settings, database),
        ChunkEmbedder(_Direct(embedder), batch_size=settings.embed_batch_size),
        token_counter(),
    )
    name = f"bench-{uuid.uuid4().hex[:8]}"
    creator = CollectionService(build_store(settings, database), _Jobs([]), CollectionDefaults())
    await creator.create(TENANT, name=name)
    pending = iter(texts)  # shared: each text is taken by one job slot
    stored = 0

    async def slot() -> None:
        nonlocal stored
        jobs = _Jobs([])  # its own, so the payload it reads back is its own upload's
        service = CollectionService(build_store(settings, database), jobs, CollectionDefaults())
        for text in pending:
            await service.add_document(TENANT, name, content=text.encode(), media_type="text/plain")
            result = await handler(_Context(jobs.payloads[-1]))  # type: ignore[arg-type]
            stored += int(result["chunks"]) if result else 0

    started = time.perf_counter()
    await asyncio.gather(*(slot() for _ in range(concurrency)))
    return time.perf_counter() - started, stored


async def _chunk_texts(texts: list[str]) -> list[str]:
    """The chunks the pipeline will make of ``texts`` (same parser, chunker and settings)."""
    settings = RagSettings()
    chunker = Chunker(
        ChunkingConfig(settings.chunk_max_tokens, settings.chunk_overlap_tokens), token_counter()
    )
    out: list[str] = []
    for text in texts:
        parsed = await extract(text.encode(), media_type="text/plain")
        out.extend(chunk.text for chunk in chunker.chunk(parsed))
    return out


async def _embed_alone(embedder: MiniLMEmbedder, chunks: list[str]) -> float:
    started = time.perf_counter()
    for start in range(0, len(chunks), BATCH):
        await embedder.embed(chunks[start : start + BATCH])
    return time.perf_counter() - started


async def _keyword_quality(database: Database, options: Options) -> str:
    """Table rows: BM25 in PostgreSQL vs ``bm25s`` on SciFact (what `propylon eval bm25` does)."""
    if not (SCIFACT / "corpus.jsonl.gz").is_file():
        return "| keyword search vs bm25s | not run: SciFact not found | | |\n"
    data = load_beir(SCIFACT, max_documents=1500 if options.quick else None)
    report = await evaluate_bm25(database, data)
    reference = report.bm25s_ndcg_at_10
    if reference is None:
        return f"| BM25 nDCG@10, SciFact test | {report.ndcg_at_10:.4f} (bm25s absent) | | |\n"
    verdict = "met" if abs(report.ndcg_at_10 - reference) <= 0.01 else "**missed**"
    where = f"SciFact test, {report.documents:,} docs, {report.queries} queries"
    return (
        f"| BM25 in PostgreSQL, nDCG@10 ({where}) | {report.ndcg_at_10:.4f} "
        f"| bm25s ± 0.01 | {verdict} |\n"
        f"| `bm25s` (lucene, k1 1.5, b 0.75), nDCG@10, same data | {reference:.4f} | | |\n"
        f"| BM25 query latency in PostgreSQL, mean of {report.queries} "
        f"| {report.search_s / report.queries * 1000:.1f} ms | | |\n"
    )


async def _forget(database: Database) -> None:
    async with database.connection() as conn:
        await conn.execute("DELETE FROM collections WHERE tenant_id = %s", (TENANT,))


async def run(options: Options) -> Section:
    documents = options.scaled(400, 30)
    pages = options.scaled(300, 20)
    texts = _abstracts(documents)
    chunks = await _chunk_texts(texts)
    embedder = await asyncio.to_thread(MiniLMEmbedder.load, threads=1, max_batch=16)
    try:
        # The baseline runs before and after the pipeline, and the two are averaged, so a
        # change of load on the machine during the run weighs on both sides alike.
        embed_s = await _embed_alone(embedder, chunks)
        async with embedded_database(options) as url:
            database = Database(url, max_size=4)
            await database.open()
            try:
                await migrate(database)
                await _forget(database)
                pipeline_s, stored = await _pipeline(database, embedder, texts, CONCURRENCY)
                await _forget(database)
                keyword = await _keyword_quality(database, options)
            finally:
                await database.close()
        embed_s = (embed_s + await _embed_alone(embedder, chunks)) / 2
    finally:
        embedder.close()
    assert stored == len(chunks), (stored, len(chunks))
    pdf = _pdf(pages)
    await extract(_pdf(1))  # a worker imports PDFium once, on its first PDF: not timed here
    started = time.perf_counter()
    parsed = await extract(pdf)
    parse_s = time.perf_counter() - started
    assert parsed.page_count == pages
    overhead = pipeline_s / embed_s - 1.0
    verdict = "met" if overhead <= 0.20 else "**missed**"
    alone = f"chunks/s, the embedder alone on the same {len(chunks):,} chunk texts"
    parsing = f"PDF parsing, {pages} pages of 45 lines (pypdfium2, page by page)"
    markdown = f"""## Ingestion

{stamp(options.command)}

| measurement | value | goal | |
|---|---:|---|---|
| documents/s, end to end (upload → stored chunks) | {documents / pipeline_s:,.1f} | | |
| chunks/s, end to end | {len(chunks) / pipeline_s:,.1f} | | |
| {alone} | {len(chunks) / embed_s:,.1f} | | |
| pipeline overhead over the embedder | {overhead * 100:+.1f} % | ≤ 20 % | {verdict} |
| {parsing} | {pages / parse_s:,.0f} pages/s | | |
{keyword}
How: {documents} SciFact abstracts (title + text), each uploaded as a text document and
ingested by `IngestionHandler` in this process, {CONCURRENCY} documents at a time as a worker
runs its jobs (`jobs.concurrency`): sha256 dedupe, upload and job rows, parse, chunk (200
tokens, 32 overlap), embed with the bundled all-MiniLM-L6-v2 (int8 weights, onnxruntime, one
thread shared by the jobs, at most 256 padded word pieces per model call, so about one chunk),
then chunks, vectors and BM25 postings written in one transaction. Baseline: the same MiniLM
embedding the same chunk texts in calls of {BATCH}, run before and after the pipeline and
averaged. The job queue's hand-off and HTTP are in neither figure. Keyword search: every
SciFact abstract indexed as one chunk through `rag/bm25.py` and its SQL, the 300 test claims
run through `BM25Index.search`, against `bm25s` on the same texts (`propylon eval bm25` runs
the same).
"""
    return Section("ingestion", markdown)


if __name__ == "__main__":
    main_for("bench.ingestion")
