"""The ingestion pipeline wired to a real, migrated PostgreSQL, with a fake job queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from propylon.db.database import Database
from propylon.db.migrator import migrate
from propylon.rag.bm25 import BM25Index
from propylon.rag.chunking import ChunkingConfig
from propylon.rag.collections import CollectionDefaults, CollectionService
from propylon.rag.embedding import ChunkEmbedder
from propylon.rag.ingest import IngestionHandler
from propylon.rag.store import CollectionStore
from tests.support.ingestion import FakeJobs, HashEmbeddings

TENANT = "00000000-0000-0000-0000-000000000000"
OTHER_TENANT = "11111111-1111-1111-1111-111111111111"


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
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url, max_size=4)
    await db.open()
    await migrate(db)
    try:
        yield db
    finally:
        await db.close()


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
