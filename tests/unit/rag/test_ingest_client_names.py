"""A collection's name goes into the server's URL quoted: ``a/b`` or ``x?y`` name a
collection, not a path or a query."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiohttp import web

from propylon.rag.ingest_client import IngestClient, IngestCommandError
from tests.support.site import _serving


async def test_a_collection_name_is_quoted_into_the_url(tmp_path: Path) -> None:
    asked: list[str] = []

    async def collection(request: web.Request) -> web.Response:
        asked.append(request.raw_path)
        return web.json_response({"error": {"message": "no such collection"}}, status=404)

    app = web.Application()
    app.router.add_get("/v1/collections/{name}", collection)
    async with _serving(app) as url:
        with pytest.raises(IngestCommandError, match="no collection"):
            await IngestClient(url, None).run([tmp_path], "a/b?c", create=False)
    assert asked == ["/v1/collections/a%2Fb%3Fc"]
