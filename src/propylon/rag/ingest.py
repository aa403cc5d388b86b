"""The ingestion job: uploaded bytes → text → chunks → vectors → stored, searchable chunks.

``IngestionHandler`` is a job handler (``propylon.jobs.handler``): the worker calls it with a
``JobContext`` whose payload names one upload. Stages, reported as progress: ``parsing``
(pages), ``chunking``, ``embedding`` (chunks), ``storing``. The chunk swap and the job's
success commit in one transaction, so a worker killed at any point leaves either the old
chunks or the new ones, and a re-run never stores a document twice.

A document that cannot be read (unsupported, damaged, encrypted, empty, over a limit) fails
its job at once with the reason, and the document records it; other errors are retried by
the queue, and the document is marked failed when the last attempt fails.

Every status write is fenced by the job attempt (``JobContext.fence``): an attempt that lost
its job (its lease expired, another attempt took over) writes nothing, so it cannot overwrite
`ready`. A worker shutting down hands the job back and leaves the document `queued`; a job the
reaper ends (its worker was lost) fails its document with the reason (``reaped``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from propylon.errors import PropylonError, ServiceUnavailable
from propylon.jobs.handler import JobCancelled, JobContext
from propylon.principal import Principal
from propylon.rag.chunking import Chunker, ChunkingConfig, CountTokens
from propylon.rag.embedding import ChunkEmbedder
from propylon.rag.parsing import ParseLimits, extract
from propylon.rag.parsing.document import Attachment
from propylon.rag.store import CollectionStore, Conn, StoredVersion

log = logging.getLogger(__name__)

INGEST_KIND = "rag.ingest"


@dataclass(frozen=True, slots=True)
class IngestLimits:
    parse: ParseLimits = field(default_factory=ParseLimits)
    embed_timeout_s: float = 600.0


RiskScreen = Callable[[list[str], Principal | None, str], Awaitable[Sequence[float | None]]]
"""Scores texts for prompt injection (0 = benign … 1 = certain), one score per text; the
screening is work Propylon does for the principal (its tenant and uploading key) and the job
whose id is given, recorded as such (``origin: internal``)."""

ChildDocuments = Callable[[Conn, str, dict[str, Any], list[Attachment], str | None], Awaitable[int]]
"""Accepts a document's attachments as child documents in the storing transaction
(``CollectionService.add_attachments``): (conn, tenant, upload, attachments, key id)."""


class IngestionHandler:
    """Runs ``rag.ingest`` jobs; payload ``{"upload_id", "document_id", "max_attempts",
    "key_id"}`` (the uploading key, charged for the embeddings; absent for older jobs)."""

    def __init__(
        self,
        store: CollectionStore,
        embedder: ChunkEmbedder,
        count_tokens: CountTokens,
        limits: IngestLimits | None = None,
        screen: RiskScreen | None = None,
        children: ChildDocuments | None = None,
    ) -> None:
        self._children = children
        self._store = store
        self._embedder = embedder
        self._count_tokens = count_tokens
        self._limits = limits or IngestLimits()
        self._screen = screen

    async def __call__(self, ctx: JobContext) -> dict[str, Any] | None:
        upload_id = str(ctx.payload["upload_id"])
        upload = await self._store.load_upload(upload_id)
        if upload is None:
            # Deleted with its document, or superseded by a newer upload already stored.
            return {"document_id": ctx.payload.get("document_id"), "skipped": "superseded"}
        document_id = str(upload["document_id"])
        await self._store.set_status(document_id, "processing", fence=ctx.fence)
        try:
            return await self._ingest(ctx, upload)
        except (JobCancelled, asyncio.CancelledError):
            await self._record_stop(ctx, document_id)
            raise
        except PropylonError as exc:
            final = not exc.retryable or ctx.attempt >= int(ctx.payload.get("max_attempts", 1))
            await self._record_failure(ctx, document_id, exc.message, final=final)
            raise
        except Exception as exc:
            final = ctx.attempt >= int(ctx.payload.get("max_attempts", 1))
            await self._record_failure(ctx, document_id, str(exc), final=final)
            raise

    async def reaped(self, conn: Conn, job_id: str, state: str, reason: str | None) -> None:
        """The reaper requeued or ended this job (its worker was lost): the document says so."""
        if state == "queued":
            await self._store.job_ended(conn, job_id, "queued", f"Retrying: {reason}")
        else:
            await self._store.job_ended(conn, job_id, "failed", reason or f"The job was {state}.")

    async def _ingest(self, ctx: JobContext, upload: dict[str, Any]) -> dict[str, Any]:
        content = bytes(upload["content"])

        async def on_page(number: int, total: int | None) -> None:
            await ctx.raise_if_cancelled()
            await ctx.progress(
                stage="parsing",
                fraction=number / total if total else None,
                counters={"pages": number},
            )

        await ctx.progress(stage="parsing", fraction=0.0, counters={"bytes": len(content)})
        parsed = await extract(
            content,
            filename=upload["filename"],
            media_type=upload["declared_type"],
            limits=self._limits.parse,
            on_page=on_page,
        )
        await ctx.raise_if_cancelled()
        await ctx.progress(stage="chunking", fraction=0.0, counters={"chars": len(parsed.text)})
        config = ChunkingConfig(**upload["chunking"])
        # CPU work (tokenising every block): in a thread, so heartbeats and every other job
        # on this worker's event loop go on meanwhile.
        chunks = await asyncio.to_thread(Chunker(config, self._count_tokens).chunk, parsed)

        async def on_batch(done: int, total: int) -> None:
            await ctx.progress(
                stage="embedding", fraction=done / total, counters={"chunks": done, "of": total}
            )

        await ctx.progress(stage="embedding", fraction=0.0, counters={"chunks": 0})
        try:
            async with asyncio.timeout(self._limits.embed_timeout_s):
                embedded = await self._embedder.embed(
                    [chunk.text for chunk in chunks],
                    model=upload["embedding_model"],
                    tenant_id=ctx.tenant_id,
                    on_batch=on_batch,
                    parent_id=f"job:{ctx.job_id}",
                    key_id=_str_or_none(ctx.payload.get("key_id")),
                )
        except TimeoutError:
            raise ServiceUnavailable(
                f"Embedding took longer than {self._limits.embed_timeout_s:g} s."
            ) from None
        risks: list[float | None] | None = None
        if self._screen is not None:
            # Indirect prompt injection: every chunk gets a risk score, shown in search
            # results; answers leave out chunks over the policy's threshold.
            await ctx.progress(stage="screening", fraction=0.0, counters={"chunks": len(chunks)})
            risks = list(
                await self._screen(
                    [chunk.text for chunk in chunks],
                    Principal.acting_for(ctx.tenant_id, _str_or_none(ctx.payload.get("key_id"))),
                    f"job:{ctx.job_id}",
                )
            )
        await ctx.progress(stage="storing", fraction=0.0, counters={"chunks": len(chunks)})
        result = {
            "document_id": str(upload["document_id"]),
            "chunks": len(chunks),
            "pages": parsed.page_count,
            "chars": len(parsed.text),
        }

        async def complete(conn: Conn) -> None:
            if parsed.attachments and self._children is not None:
                result["attachments"] = await self._children(
                    conn, ctx.tenant_id, upload, parsed.attachments,
                    _str_or_none(ctx.payload.get("key_id")),
                )  # fmt: skip
            await ctx.complete_in(conn, result)

        stored = await self._store.replace_chunks(
            StoredVersion(
                document_id=str(upload["document_id"]),
                collection_id=str(upload["collection_id"]),
                upload_id=str(upload["upload_id"]),
                sha256=upload["sha256"],
                size_bytes=len(content),
                filename=upload["filename"],
                media_type=parsed.media_type,
                text=parsed.text,
                page_count=parsed.page_count,
                chunks=chunks,
                vectors=embedded.vectors,
                model_id=embedded.model_id,
                weights=embedded.weights,
                risks=risks,
            ),
            on_commit=complete,
        )
        if not stored:
            result["skipped"] = "superseded"
        return result

    async def _record_stop(self, ctx: JobContext, document_id: str) -> None:
        if ctx.stop_reason == "lease_lost":
            return  # another attempt owns the job now; the fence would refuse anyway
        if ctx.stop_reason == "shutdown":  # the job goes back to the queue, and so does this
            status, reason = "queued", "The worker stopped; ingestion will resume."
        else:
            status, reason = "failed", "Ingestion was cancelled."
        await self._write_status(ctx, document_id, status, reason)

    async def _record_failure(
        self, ctx: JobContext, document_id: str, reason: str, *, final: bool
    ) -> None:
        if final:
            await self._write_status(ctx, document_id, "failed", reason)
        else:
            await self._write_status(
                ctx, document_id, "queued", f"Attempt {ctx.attempt} failed, retrying: {reason}"
            )

    async def _write_status(
        self, ctx: JobContext, document_id: str, status: str, reason: str
    ) -> None:
        try:
            await self._store.set_status(document_id, status, reason, fence=ctx.fence)
        except Exception:  # the job's own outcome matters more than this bookkeeping
            log.exception("could not record the outcome of document %s", document_id)


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
