"""Writes racing a delete: a request that read a collection or a document just before another
request deleted it gets what the delete's order implies (404 for the collection, a new
document for a re-upload), never a 500 from the database's foreign keys.

The race is made deterministic: the reader is handed the row as it was read, after the
delete has committed (``stale``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from propylon.rag.store import Row
from tests.integration.rag.conftest import call
from tests.support.servers import AppServer


@pytest.fixture
async def http(server: AppServer) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(server.v1 + "/", headers=server.headers) as session:
        yield session


def stale(row: Row) -> Callable[..., Awaitable[Row]]:
    """A reader that returns ``row`` as it was read before the delete."""

    async def read(*args: Any, **kwargs: Any) -> Row:
        return row

    return read


async def deleted_collection(server: AppServer, http: aiohttp.ClientSession) -> Row:
    assert (await call(http, "POST", "collections", {"name": "racing"}))[0] == 201
    services = server.app.state.services
    principal = await services.keys.authenticate(server.api_key)
    row: Row = await services.collections.get(principal.tenant_id, "racing")
    assert (await call(http, "DELETE", "collections/racing"))[0] == 200
    return row


async def test_an_upload_into_a_collection_deleted_meanwhile_is_a_404(
    server: AppServer, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = await deleted_collection(server, http)
    monkeypatch.setattr(server.app.state.services.collections, "get", stale(row))
    status, error = await call(http, "POST", "collections/racing/documents", {"text": "late"})
    assert status == 404, error
    assert error["error"]["param"] == "collection_id"


async def test_a_source_made_in_a_collection_deleted_meanwhile_is_a_404(
    server: AppServer, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    row = await deleted_collection(server, http)
    monkeypatch.setattr(server.app.state.services.collections, "get", stale(row))
    body = {"type": "url", "config": {"url": "https://example.com/docs/"}}  # never fetched
    status, error = await call(http, "POST", "collections/racing/sources", body)
    assert status == 404, error
    assert error["error"]["param"] == "collection_id"


async def test_a_new_version_of_a_document_deleted_meanwhile_is_a_new_document(
    server: AppServer, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (await call(http, "POST", "collections", {"name": "versions"}))[0] == 201
    status, first = await call(
        http, "POST", "collections/versions/documents", {"text": "base", "external_id": "e0"}
    )
    assert status == 202, first
    services = server.app.state.services
    principal = await services.keys.authenticate(server.api_key)
    found: Row = await services.collections.get_document(
        principal.tenant_id, "versions", first["id"]
    )
    assert (await call(http, "DELETE", f"collections/versions/documents/{first['id']}"))[0] == 200
    store = services.collections._store
    monkeypatch.setattr(store, "find_by_external_id", stale(found))
    body = {"text": "new version", "external_id": "e0"}
    status, second = await call(http, "POST", "collections/versions/documents", body)
    assert status == 202, second
    assert second["id"] != first["id"]  # a new document, not an upload to the deleted one
