"""Uploads are counted as they stream in: a body without `Content-Length` (chunked) is refused
with 413 as soon as it passes the limit, not after being spooled whole."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from tests.support.servers import AppServer, serve_app

LIMIT = 1024
BOUNDARY = "propylon-test-boundary"


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[AppServer]:
    async with serve_app(database_url=database_url, rag={"max_upload_bytes": LIMIT}) as app:
        yield app


async def test_a_chunked_upload_is_refused_at_the_limit_without_being_read_whole(
    server: AppServer,
) -> None:
    sent = 0
    chunk = b"x" * 65536

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        head = (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            'filename="big.txt"\r\nContent-Type: text/plain\r\n\r\n'
        )
        yield head.encode()
        for _ in range(1024):  # 64 MiB, if the server read it all
            sent += len(chunk)
            yield chunk
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    headers = {**server.headers, "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server.v1}/collections", json={"name": "docs"}, headers=server.headers
        ) as r:
            assert r.status == 201, await r.text()
        async with http.post(
            f"{server.v1}/collections/docs/documents", data=body(), headers=headers
        ) as response:
            assert "content-length" not in {h.lower() for h in response.request_info.headers}
            assert response.status == 413
            error = (await response.json())["error"]
    assert error["code"] == "request_too_large"
    assert "upload limit" in error["message"]
    assert sent < 16 * 1024 * 1024, f"the server read {sent:,} bytes before refusing"


async def test_a_chunked_json_upload_is_refused_at_the_limit(server: AppServer) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield b'{"text": "'
        for _ in range(1024):
            yield b"y" * 65536
        yield b'"}'

    headers = {**server.headers, "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server.v1}/collections", json={"name": "docs"}, headers=server.headers
        ) as r:
            assert r.status == 201
        async with http.post(
            f"{server.v1}/collections/docs/documents", data=body(), headers=headers
        ) as response:
            assert response.status == 413


async def test_an_upload_under_the_limit_is_accepted(server: AppServer) -> None:
    form = aiohttp.FormData()
    form.add_field("file", b"# Small\n\nfits.\n", filename="small.md")
    async with aiohttp.ClientSession(headers=server.headers) as http:
        async with http.post(f"{server.v1}/collections", json={"name": "docs"}) as r:
            assert r.status == 201
        async with http.post(f"{server.v1}/collections/docs/documents", data=form) as response:
            assert response.status == 202, await response.text()
