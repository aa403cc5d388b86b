"""Sources over real HTTP, synced by the in-process worker: made, listed, read, synced and
deleted; refused configurations answer 400 and unknown sources 404, never 500."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.integration.rag.conftest import call, serve_rag, wait_for_job


@pytest.fixture
async def http(database_url: str, tmp_path: Path) -> AsyncIterator[aiohttp.ClientSession]:
    rag = {"sources": {"folder_roots": [str(tmp_path / "shared")]}}
    async with (
        serve_rag(database_url, rag=rag) as server,
        aiohttp.ClientSession(server.v1 + "/", headers=server.headers) as session,
    ):
        yield session


async def test_a_folder_source_over_http(http: aiohttp.ClientSession, tmp_path: Path) -> None:
    folder = tmp_path / "shared" / "notes"
    folder.mkdir(parents=True)
    (folder / "tides.md").write_text("# Tides\n\nHigh water comes twice a day.\n")
    (folder / "winds.md").write_text("# Winds\n\nThe westerlies blow in winter.\n")
    assert (await call(http, "POST", "collections", {"name": "notes"}))[0] == 201

    status, error = await call(
        http, "POST", "collections/notes/sources",
        {"type": "folder", "config": {"path": str(tmp_path)}},
    )  # fmt: skip
    assert status == 400 and error["error"]["code"] == "invalid_source"
    status, error = await call(http, "POST", "collections/notes/sources", {"type": "ftp"})
    assert status == 400 and error["error"]["param"] == "type"
    for url in ("http://[::1", "http://a b/", "http://example.com:99999/"):
        body = {"type": "url", "config": {"url": url}}
        status, error = await call(http, "POST", "collections/notes/sources", body)
        assert status == 400 and error["error"]["code"] == "invalid_source", (url, error)
    # No `rag.sources.secrets_key` here: an s3 source's secret could not be stored sealed.
    s3 = {
        "type": "s3",
        "config": {"endpoint": "https://s3.example.com", "bucket": "b", "access_key_id": "AKIA"},
        "secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    }
    status, error = await call(http, "POST", "collections/notes/sources", s3)
    assert status == 400 and error["error"]["code"] == "secrets_key_not_set", error
    assert "PROPYLON_RAG__SOURCES__SECRETS_KEY" in error["error"]["message"]

    body = {"type": "folder", "config": {"path": str(folder)}}
    status, source = await call(http, "POST", "collections/notes/sources", body)
    assert status == 201 and source["object"] == "source", source
    job = await wait_for_job(http, source["job_id"])
    assert job["state"] == "succeeded" and job["result"]["added"] == 2, job

    status, listed = await call(http, "GET", "collections/notes/sources")
    assert status == 200 and [s["id"] for s in listed["data"]] == [source["id"]]
    status, shown = await call(http, "GET", f"collections/notes/sources/{source['id']}")
    assert status == 200 and shown["last_result"]["added"] == 2 and shown["document_count"] == 2
    assert (await call(http, "GET", f"collections/notes/sources/{uuid.uuid4()}"))[0] == 404
    assert (await call(http, "GET", "collections/notes/sources/not-an-id"))[0] == 404

    (folder / "winds.md").unlink()
    status, sync = await call(http, "POST", f"collections/notes/sources/{source['id']}/sync")
    assert status == 202
    job = await wait_for_job(http, sync["job_id"])
    assert (job["result"]["deleted"], job["result"]["skipped"]) == (1, 1), job

    status, deleted = await call(http, "DELETE", f"collections/notes/sources/{source['id']}")
    assert status == 200 and deleted["deleted"] is True
    status, documents = await call(http, "GET", "collections/notes/documents")
    assert documents["data"] == []
    assert (await call(http, "GET", f"collections/notes/sources/{source['id']}"))[0] == 404
