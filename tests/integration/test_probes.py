"""What uptime checks and load balancers ask: the health routes and the console page answer
HEAD as they answer GET, without a body."""

from __future__ import annotations

import aiohttp
import pytest

from tests.support.servers import AppServer


@pytest.mark.parametrize(
    ("path", "media_type"),
    [("/healthz", "application/json"), ("/readyz", "application/json"), ("/", "text/html")],
)
async def test_head_answers_as_get_without_a_body(
    gateway: AppServer, path: str, media_type: str
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}{path}") as got:
            assert got.status == 200
            length = len(await got.read())
        async with http.head(f"{gateway.url}{path}") as head:
            assert head.status == 200, "405 broke uptime checks that probe with HEAD"
            assert head.headers["content-type"].startswith(media_type)
            assert await head.read() == b""
    assert length > 0
