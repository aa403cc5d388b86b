"""The ingestion pipeline wired to a real, migrated PostgreSQL, with a fake job queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from propylon.db.database import Database
from propylon.rag.bm25 import BM25Index
from propylon.rag.chunking import ChunkingConfig
from propylon.rag.collections import CollectionDefaults, CollectionService
from propylon.rag.embedding import ChunkEmbedder
from propylon.rag.ingest import IngestionHandler
from propylon.rag.store import CollectionStore
from tests.support.ingestion import FakeJobs, HashEmbeddings
from tests.support.job_rig import IN_PROCESS
from tests.support.servers import AppServer, serve_app
from tests.support.waiting import finished

TENANT = "00000000-0000-0000-0000-000000000000"
OTHER_TENANT = "11111111-1111-1111-1111-111111111111"


MINILM = {
    "name": "local/all-MiniLM-L6-v2",
    "kind": "embeddings",
    "deployments": [{"provider": "local", "model": "all-MiniLM-L6-v2"}],
}


def serve_rag(database_url: str, **overrides: Any) -> AbstractAsyncContextManager[AppServer]:
    """Propylon on ``database_url`` embedding with the bundled MiniLM, its in-process worker
    ingesting what a test uploads, the guard off (it has its own tests; here it costs time)."""
    return serve_app(
        database_url=database_url,
        models=[MINILM],
        jobs=IN_PROCESS,
        guard={"enabled": False},
        **overrides,
    )


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[AppServer]:
    async with serve_rag(database_url) as app:
        yield app


async def call(
    http: aiohttp.ClientSession, method: str, path: str, body: dict[str, Any] | None = None
) -> tuple[int, dict[str, Any]]:
    """One JSON call: its status and its decoded body."""
    async with http.request(method, path, json=body) as response:
        return response.status, await response.json()


async def wait_for_job(http: aiohttp.ClientSession, job_id: str) -> dict[str, Any]:
    """The job (``http`` based at ``/v1/``) once it has finished."""

    async def fetch() -> dict[str, Any]:
        async with http.get(f"jobs/{job_id}") as response:
            job: dict[str, Any] = await response.json()
            return job

    return await finished(fetch, f"job {job_id} to finish")


def count_words(text: str) -> int:
    return len(text.split())


@dataclass
class Pipeline:
    database: Database
    store: CollectionStore
    jobs: FakeJobs
    embeddings: HashEmbeddings
    service: CollectionService
    handler: IngestionHandler


@pytest.fixture
async def pipeline(database: Database) -> Pipeline:
    store = CollectionStore(database, BM25Index())
    jobs = FakeJobs()
    embeddings = HashEmbeddings()
    service = CollectionService(
        store,
        jobs,
        CollectionDefaults(
            embedding_model="embed-test",
            chunking=ChunkingConfig(max_tokens=40, overlap_tokens=0),
            max_upload_bytes=1_000_000,
        ),
    )
    embedder = ChunkEmbedder(embeddings, batch_size=4, weights_for=lambda model: f"w-{model}")
    handler = IngestionHandler(store, embedder, count_words)
    return Pipeline(database, store, jobs, embeddings, service, handler)
