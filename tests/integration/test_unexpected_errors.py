"""A bug's 500 costs its own request only: the connection it came on stays usable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest

from tests.support.servers import AppServer, serve_app


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[AppServer]:
    async with serve_app(database_url=database_url) as running:
        yield running


async def exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, key: str
) -> tuple[bytes, bytes]:
    """One keep-alive GET on an open connection: its status line and headers."""
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
    )
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    await reader.readexactly(length)
    return head.split(b"\r\n", 1)[0], head


async def test_a_500_leaves_the_connection_open_for_the_next_request(
    server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(tenant_id: str) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(server.app.state.services.collections, "list_all", broken)
    url = urlsplit(server.url)
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    try:
        status, head = await exchange(reader, writer, "/v1/collections", server.api_key)
        assert status == b"HTTP/1.1 500 Internal Server Error"
        assert b"connection: close" not in head.lower()
        status, _ = await exchange(reader, writer, "/healthz", server.api_key)
        assert status == b"HTTP/1.1 200 OK"  # on the same connection: it was not reset
    finally:
        writer.close()
