"""A real `propylon worker` killed with SIGKILL in the middle of a 50-document ingestion: after
a new worker starts, every document ends ingested, and none is stored twice."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml

from propylon.db.database import Database
from tests.support.processes import KILLABLE_WORKER_ENV, MINILM, propylon_process
from tests.support.servers import AppServer, serve_app

pytestmark = pytest.mark.slow

DOCUMENTS = 50
WORKER_ENV = KILLABLE_WORKER_ENV


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[AppServer]:
    jobs = {"in_process_worker": False}
    async with serve_app(
        database_url=database_url, models=[MINILM], jobs=jobs, guard={"enabled": False}
    ) as app:
        yield app


async def scalar(database: Database, sql: str) -> int:
    async with database.connection() as conn:
        cur = await conn.execute(sql)
        row = await cur.fetchone()
    assert row is not None
    return int(row["n"])


async def wait_for(database: Database, sql: str, at_least: int, timeout: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await scalar(database, sql) < at_least:
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {sql}"
        await asyncio.sleep(0.05)


SUCCEEDED = "SELECT count(*) AS n FROM jobs WHERE kind = 'rag.ingest' AND state = 'succeeded'"


async def test_sigkill_mid_ingestion_loses_and_duplicates_nothing(
    server: AppServer, database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(yaml.safe_dump({"models": [MINILM]}))
    async with aiohttp.ClientSession(server.v1 + "/", headers=server.headers) as http:
        await http.post("collections", json={"name": "bulk"})
        for i in range(DOCUMENTS):
            text = "\n\n".join(
                f"Document {i}, paragraph {p}: " + "facts about a numbered topic. " * 8
                for p in range(2)
            )
            async with http.post(
                "collections/bulk/documents", json={"text": text, "external_id": f"doc-{i}"}
            ) as response:
                assert response.status == 202

    database = Database(database_url, max_size=2)
    await database.open()
    try:
        env = {"DATABASE_URL": database_url, **WORKER_ENV}
        async with propylon_process(
            "worker", "--config", str(config), env=env, log=tmp_path / "worker-1.log"
        ) as first:
            await wait_for(database, SUCCEEDED, 5, timeout=120)
            first.send_signal(signal.SIGKILL)
            await first.wait()
        done_before = await scalar(database, SUCCEEDED)
        assert done_before < DOCUMENTS, "the worker finished before it could be killed"
        async with propylon_process(
            "worker", "--config", str(config), env=env, log=tmp_path / "worker-2.log"
        ):
            await wait_for(database, SUCCEEDED, DOCUMENTS, timeout=300)

        assert await scalar(database, "SELECT count(*) AS n FROM documents") == DOCUMENTS
        assert (
            await scalar(database, "SELECT count(*) AS n FROM documents WHERE status = 'ready'")
            == DOCUMENTS
        )
        # Stored once each: the chunks of every document are exactly the ones it counts, and
        # the BM25 statistics agree with the chunks.
        mismatched = """SELECT count(*) AS n FROM documents d
            WHERE d.chunk_count <> (SELECT count(*) FROM chunks c WHERE c.document_id = d.id)"""
        assert await scalar(database, mismatched) == 0
        stats = """SELECT count(*) AS n FROM bm25_stats s WHERE s.chunk_count <>
            (SELECT count(*) FROM chunks c WHERE c.collection_id = s.collection_id)"""
        assert await scalar(database, stats) == 0
        assert await scalar(database, "SELECT count(*) AS n FROM document_uploads") == 0
    finally:
        await database.close()
