"""A real `propylon worker` killed with SIGKILL in the middle of syncing a web site: the next
worker resumes the sync, which ends with the counts of an uninterrupted one and every page
ingested once; then the site changes and `propylon sources sync` reports exactly that."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from propylon.db.database import Database
from tests.support.processes import (
    KILLABLE_WORKER_ENV,
    MINILM,
    complete_propylon,
    propylon_process,
)
from tests.support.servers import AppServer, serve_app
from tests.support.site import StaticSite, static_site
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

PAGES = 24
WORKER_ENV = {
    **KILLABLE_WORKER_ENV,
    "PROPYLON_RAG__SOURCES__URL_HOSTS": '["127.0.0.1"]',
    # Polite enough that the worker is still crawling when it is killed.
    "PROPYLON_RAG__SOURCES__REQUESTS_PER_S": "5",
}
COUNTS = ("added", "replaced", "deleted", "skipped", "rejected")


def page(n: int, words: str = "") -> bytes:
    return (
        f"<html><body><h1>Page {n}</h1><p>Page {n} of the knowledge base is about topic "
        f"number {n}. {words}</p></body></html>"
    ).encode()


def index(numbers: range) -> bytes:
    links = "".join(f'<a href="p{n}.html">page {n}</a> ' for n in numbers)
    return f"<html><body><h1>Knowledge base</h1>{links}</body></html>".encode()


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[AppServer]:
    async with serve_app(
        database_url=database_url,
        models=[MINILM],
        jobs={"in_process_worker": False},
        guard={"enabled": False},
        # As on the worker: a source on this address is refused when it is made otherwise.
        rag={"sources": {"url_hosts": ["127.0.0.1"]}},
    ) as app:
        yield app


@pytest.fixture
async def site() -> AsyncIterator[StaticSite]:
    async with static_site() as served:
        served.pages = {f"/kb/p{n}.html": page(n) for n in range(PAGES)}
        served.pages["/kb/"] = index(range(PAGES + 1))  # p24 does not exist yet
        yield served


async def scalar(database: Database, sql: str, *args: Any) -> Any:
    async with database.connection() as conn:
        cur = await conn.execute(sql, args)
        row = await cur.fetchone()
    assert row is not None
    return row["v"]


async def test_sigkill_mid_sync_resumes_with_the_same_counts(
    server: AppServer, site: StaticSite, database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "models.yaml"
    config.write_text(yaml.safe_dump({"models": [MINILM]}))
    async with aiohttp.ClientSession(server.v1 + "/", headers=server.headers) as http:
        await http.post("collections", json={"name": "kb"})
        body = {"type": "url", "config": {"url": site.url + "/kb/", "mode": "site"}}
        async with http.post("collections/kb/sources", json=body) as response:
            assert response.status == 201, await response.text()
            source = await response.json()
    job_id = source["job_id"]

    database = Database(database_url, max_size=2)
    await database.open()
    env = {"DATABASE_URL": database_url, **WORKER_ENV}
    worker = ("worker", "--config", str(config))
    try:
        dealt_with = "SELECT count(*) AS v FROM source_sync_items WHERE job_id = %s"
        async with propylon_process(*worker, env=env, log=tmp_path / "worker-1.log") as first:

            async def midway() -> bool | None:
                return True if await scalar(database, dealt_with, job_id) >= 5 else None

            await eventually(midway, "the first worker to be midway through the sync")
            first.send_signal(signal.SIGKILL)
            await first.wait()
        state = "SELECT state AS v FROM jobs WHERE id = %s"
        assert await scalar(database, state, job_id) == "running", "it finished before the kill"
        assert await scalar(database, dealt_with, job_id) < PAGES + 1

        async with propylon_process(*worker, env=env, log=tmp_path / "worker-2.log"):

            async def job_done() -> dict[str, Any] | None:
                async with database.connection() as conn:
                    cur = await conn.execute("SELECT * FROM jobs WHERE id = %s", (job_id,))
                    row = await cur.fetchone()
                return row if row and row["state"] in ("succeeded", "failed") else None

            job = await eventually(job_done, "the resumed sync to end", timeout=300)
            assert job["state"] == "succeeded", job["reason"]
            assert job["attempts"] == 2
            assert {k: job["result"][k] for k in COUNTS} == {
                "added": PAGES + 1, "replaced": 0, "deleted": 0, "skipped": 0, "rejected": 0,
            }  # fmt: skip

            ready = "SELECT count(*) AS v FROM documents WHERE status = 'ready'"

            async def all_ready() -> bool | None:
                return True if await scalar(database, ready) == PAGES + 1 else None

            await eventually(all_ready, "every page to be ingested", timeout=300)
            assert await scalar(database, "SELECT count(*) AS v FROM documents") == PAGES + 1
            assert await scalar(database, "SELECT count(*) AS v FROM source_sync_items") == 0

            # The site changes; the command line syncs and reports exactly that.
            site.pages["/kb/p24.html"] = page(24)
            site.pages["/kb/p3.html"] = page(3, "Now also about lighthouses.")
            del site.pages["/kb/p7.html"]
            done = await complete_propylon(
                "sources", "sync", str(source["id"]), "--collection", "kb",
                "--url", server.url, "--api-key", server.api_key,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
            assert f"1 added, 1 replaced, 1 deleted, {PAGES - 1} skipped, 0 rejected" in (
                done.stdout
            )
        listed = await complete_propylon(
            "sources", "list", "--collection", "kb",
            "--url", server.url, "--api-key", server.api_key,
        )  # fmt: skip
        assert str(source["id"]) in listed.stdout and "documents=25" in listed.stdout
    finally:
        await database.close()
