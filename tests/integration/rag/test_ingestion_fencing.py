"""Document status follows its job's attempts: a worker that stops cleanly leaves the document
`queued` (and the next worker finishes it), a stale attempt cannot overwrite `ready`, and a job
the reaper fails fails its document, whose bytes may then be uploaded again."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import Embeddings, JSONObject
from propylon.jobs.handler import Handlers
from propylon.rag.bm25 import BM25Index
from propylon.rag.chunking import ChunkingConfig
from propylon.rag.collections import CollectionDefaults, CollectionService
from propylon.rag.embedding import ChunkEmbedder
from propylon.rag.ingest import INGEST_KIND, IngestionHandler
from propylon.rag.store import CollectionStore
from tests.integration.rag.conftest import TENANT, count_words
from tests.support.ingestion import HashEmbeddings
from tests.support.job_rig import JobRig, job_rig
from tests.support.waiting import eventually

TEXT = b"# Notes\n\nThe fence keeps stale attempts out.\n"


class GatedEmbeddings(HashEmbeddings):
    """Embeds only once ``gate`` is open; ``entered`` is set when a call arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def embed(
        self, texts: list[str], request: JSONObject | None = None, call: CallInfo | None = None
    ) -> Embeddings:
        self.entered.set()
        await self.gate.wait()
        return await super().embed(texts, request, call)


@dataclass
class Rig:
    jobs: JobRig
    store: CollectionStore
    service: CollectionService
    embeddings: GatedEmbeddings
    handlers: Handlers

    async def document(self, document_id: str) -> dict[str, Any]:
        async with self.jobs.database.connection() as conn:
            cur = await conn.execute(
                "SELECT status, error, job_id FROM documents WHERE id = %s", (document_id,)
            )
            row = await cur.fetchone()
        assert row is not None
        return dict(row)

    async def job_state(self, job_id: str) -> str:
        async with self.jobs.database.connection() as conn:
            cur = await conn.execute("SELECT state FROM jobs WHERE id = %s", (job_id,))
            row = await cur.fetchone()
        assert row is not None
        state: str = row["state"]
        return state

    async def until_status(self, document_id: str, status: str) -> None:
        async def reached() -> bool | None:
            return True if (await self.document(document_id))["status"] == status else None

        await eventually(reached, f"document {document_id} {status}")


@pytest.fixture
async def rig(database_url: str) -> AsyncIterator[Rig]:
    async with job_rig(database_url) as jobs:
        store = CollectionStore(jobs.database, BM25Index())
        embeddings = GatedEmbeddings()
        service = CollectionService(
            store,
            jobs.queue,
            CollectionDefaults(
                embedding_model="embed-test",
                chunking=ChunkingConfig(max_tokens=40, overlap_tokens=0),
                max_upload_bytes=1_000_000,
                max_attempts=1,
            ),
        )
        embedder = ChunkEmbedder(embeddings, batch_size=4, weights_for=lambda model: None)
        handler = IngestionHandler(store, embedder, count_words)
        await service.create(TENANT, name="docs")
        yield Rig(jobs, store, service, embeddings, {INGEST_KIND: handler})


async def test_a_clean_shutdown_leaves_the_document_queued_for_the_next_worker(rig: Rig) -> None:
    accepted = await rig.service.add_document(TENANT, "docs", content=TEXT, filename="a.md")
    document_id, job_id = str(accepted.document["id"]), accepted.job_id
    assert job_id is not None
    async with rig.jobs.worker(rig.handlers):
        await asyncio.wait_for(rig.embeddings.entered.wait(), 30)
        assert (await rig.document(document_id))["status"] == "processing"
    # The worker stopped (grace period over) and handed the job back.
    document = await rig.document(document_id)
    assert document["status"] == "queued", document
    assert "resume" in document["error"]
    assert await rig.job_state(job_id) == "queued"

    rig.embeddings.gate.set()
    async with rig.jobs.worker(rig.handlers):
        await rig.until_status(document_id, "ready")
    assert await rig.job_state(job_id) == "succeeded"


async def test_a_stale_attempt_cannot_overwrite_ready(rig: Rig) -> None:
    rig.embeddings.gate.set()
    accepted = await rig.service.add_document(TENANT, "docs", content=TEXT, filename="a.md")
    document_id, job_id = str(accepted.document["id"]), accepted.job_id
    async with rig.jobs.worker(rig.handlers):
        await rig.until_status(document_id, "ready")
    # An attempt that lost the job (another worker finished it) reports late.
    stale = {"id": job_id, "worker_id": "lost-worker", "attempt": 1}
    for status in ("processing", "failed", "queued"):
        written = await rig.store.set_status(document_id, status, "late", fence=stale)
        assert written is False
    assert (await rig.document(document_id))["status"] == "ready"


async def test_a_job_the_reaper_fails_fails_its_document_which_can_be_uploaded_again(
    rig: Rig,
) -> None:
    rig.embeddings.gate.set()
    accepted = await rig.service.add_document(TENANT, "docs", content=TEXT, filename="a.md")
    document_id, job_id = str(accepted.document["id"]), accepted.job_id
    assert job_id is not None
    # A worker claimed it, marked the document processing, then died (its lease ran out).
    async with rig.jobs.database.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET state = 'running', worker_id = 'dead', attempts = 1,"
            " lease_expires_at = now() - interval '1 second' WHERE id = %s",
            (job_id,),
        )
        await conn.execute(
            "UPDATE documents SET status = 'processing' WHERE id = %s", (document_id,)
        )
    async with rig.jobs.worker(rig.handlers):  # its reaper finds the job
        await rig.until_status(document_id, "failed")
    assert await rig.job_state(job_id) == "failed"
    assert "worker lost" in (await rig.document(document_id))["error"]

    again = await rig.service.add_document(TENANT, "docs", content=TEXT, filename="a.md")
    assert again.duplicate is False
    assert again.job_id != job_id
    async with rig.jobs.worker(rig.handlers):
        await rig.until_status(document_id, "ready")


async def test_bytes_of_a_document_stuck_behind_a_dead_job_can_be_uploaded_again(
    rig: Rig,
) -> None:
    """Even when nothing updated the document (a reaper of an older version ended its job)."""
    accepted = await rig.service.add_document(TENANT, "docs", content=TEXT, filename="a.md")
    async with rig.jobs.database.connection() as conn:
        await conn.execute(
            "UPDATE jobs SET state = 'failed', reason = 'worker lost' WHERE id = %s",
            (accepted.job_id,),
        )
    again = await rig.service.add_document(TENANT, "docs", content=TEXT, filename="a.md")
    assert again.duplicate is False
    assert again.job_id != accepted.job_id
