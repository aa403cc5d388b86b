"""Request headers carrying what a client can put there get the request's normal answer or a
clear 400, never a 500 or a hang, and the request log keeps a row for each.

What reaches Propylon: the HTTP parser (httptools) refuses a NUL, any other control character
but a tab, and DEL in a header value with its own 400 before the app; bytes past 0x7f pass and
are read as latin-1. So a NUL or a lone surrogate reaches the log only escaped inside the JSON
of ``x-propylon-metadata``, which is refused with a 400 naming the field; ``x-request-id`` is
kept only when printable ASCII; every other header, ``cache-control`` included, ends as one
of a few fixed words. The ``guard``, ``headers`` and ``attempts`` jsonb columns hold no
header's text (they are escaped all the same: ``test_writer_refusals``). Sent over a raw
socket: HTTP clients refuse most of these bytes before they leave."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from propylon.testing import FakeUpstream
from tests.integration.observe.support import records, serve
from tests.support.servers import AppServer

BODY = orjson.dumps({"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})


async def raw_post(server: AppServer, headers: list[tuple[bytes, bytes]]) -> tuple[int, Any]:
    """``POST /v1/chat/completions`` with ``headers`` sent byte for byte: status and body."""
    url = urlsplit(server.url)
    assert url.hostname is not None and url.port is not None
    reader, writer = await asyncio.open_connection(url.hostname, url.port)
    head = [
        b"POST /v1/chat/completions HTTP/1.1",
        b"Host: " + url.netloc.encode(),
        b"Authorization: Bearer " + server.api_key.encode(),
        b"Content-Type: application/json",
        b"Content-Length: " + str(len(BODY)).encode(),
        b"Connection: close",
        *(name + b": " + value for name, value in headers),
    ]
    try:
        writer.write(b"\r\n".join(head) + b"\r\n\r\n" + BODY)
        await writer.drain()
        async with asyncio.timeout(30):
            answer = await reader.read()
    finally:
        writer.close()
    status_line, _, rest = answer.partition(b"\r\n")
    _, _, body = rest.partition(b"\r\n\r\n")
    status = int(status_line.split()[1])
    try:
        return status, orjson.loads(body)
    except orjson.JSONDecodeError:
        return status, body


@pytest.fixture
async def server(database_url: str, upstream: FakeUpstream) -> Any:
    async with serve(database_url, upstream) as running:
        yield running


# (what is sent, its header, its value, the status, the metadata stored or None)
SENT: list[tuple[str, bytes, bytes, int, dict[str, str] | None]] = [
    ("metadata of latin-1 bytes", b"x-propylon-metadata", b'{"k": "caf\xe9 \xff"}', 200,
     {"k": "caf\u00e9 \u00ff"}),
    ("metadata of UTF-8 bytes", b"x-propylon-metadata", '{"k": "café"}'.encode(), 200,
     {"k": "caf\u00c3\u00a9"}),  # headers are latin-1: kept as the bytes read, not lost
    ("metadata escaping a control character", b"x-propylon-metadata", b'{"k": "a\\u0001b"}',
     200, {"k": "a\x01b"}),
    ("metadata holding a tab", b"x-propylon-metadata", b'{"k": "a\tb"}', 400, None),
    ("metadata escaping a NUL", b"x-propylon-metadata", b'{"k": "a\\u0000b"}', 400, None),
    ("metadata escaping a lone surrogate", b"x-propylon-metadata", b'{"k": "\\udc80"}', 400,
     None),
    ("request id of bytes past ASCII", b"x-request-id", b"id\t\x80\xff", 200, None),
    ("cache-control of bytes past ASCII", b"cache-control", b"no-cache\t\xff", 200, None),
    ("another header of bytes past ASCII", b"x-anything", b"\t\x80\xc3\x28\xff", 200, None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("header", "value", "status", "metadata"),
    [pytest.param(*case[1:], id=case[0]) for case in SENT],
)
async def test_header_bytes_get_the_normal_answer_or_a_400_and_the_request_is_logged(
    server: AppServer, header: bytes, value: bytes, status: int, metadata: dict[str, str] | None
) -> None:
    answered, body = await raw_post(server, [(header, value)])
    assert answered == status, body
    if status == 400:
        assert body["error"]["param"].startswith(("metadata", "x-propylon-metadata")), body
    (logged,) = await records(server, 1)
    assert logged["status"] == status
    if header == b"x-request-id":
        assert logged["request_id"] != value.decode("latin-1"), "not printable ASCII: replaced"
    if metadata is not None:
        assert logged["metadata"] == metadata
    log = server.app.state.services.observe.request_log
    assert (log.refused, log.dropped, log.failed_writes) == (0, 0, 0)


@pytest.mark.parametrize(
    "value",
    [b'{"k": "a\x00b"}', b'{"k": "a\x01b"}', b'{"k": "a\x1bb"}', b'{"k": "a\x7fb"}'],
    ids=["NUL", "SOH", "ESC", "DEL"],
)
async def test_a_control_character_in_a_header_is_refused_by_the_server_before_the_app(
    server: AppServer, value: bytes
) -> None:
    """The HTTP parser answers 400 itself: the request never reaches Propylon (nothing to
    log), and the server goes on answering."""
    answered, _ = await raw_post(server, [(b"x-propylon-metadata", value)])
    assert answered == 400
    assert (await raw_post(server, []))[0] == 200
    (logged,) = await records(server, 1)
    assert logged["status"] == 200
