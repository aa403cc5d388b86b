"""JSON in and out of the HTTP layer, with orjson, a hard size limit and a depth limit.

A body is written again after it is read (sent upstream, kept in the request log), and orjson
writes at most 254 levels of nesting: a body nested deeper than ``MAX_DEPTH`` levels of arrays
and objects is refused here with a 400, not failed there with a 500 and no record."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from propylon.errors import InvalidJSON, RequestTooLarge, UnsupportedEncoding
from propylon.http.piecewise_json import loads_in_pieces
from propylon.params import BIGINT_MAX, digits
from propylon.storable import check_storable

_LARGE_BODY = 256 * 1024  # bytes past which a body is decoded in pieces (a few ms at most)
_PIECE = 16 * 1024  # bytes of JSON decoded between two turns of the event loop
MAX_DEPTH = 128
_TOO_DEEP = f"The request body nests arrays and objects deeper than {MAX_DEPTH} levels."


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def limit_body(request: Request, max_bytes: int, message: str) -> Request:
    """``request`` whose body raises ``RequestTooLarge(message)`` as soon as more than
    ``max_bytes`` have arrived: at once when ``Content-Length`` says so, else while it streams
    in (chunked uploads declare no length), so nothing past the limit is read or spooled.
    A body with a ``Content-Encoding`` (gzip…) is refused with 415: it is read as sent."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding != "identity":
        raise UnsupportedEncoding(
            f"Request bodies are read as sent: `Content-Encoding: {encoding}` is not supported; "
            "send the body uncompressed.",
            param="content-encoding",
        )
    declared = _content_length(request)
    if declared is not None and declared > max_bytes:
        raise RequestTooLarge(message)
    received = 0

    async def receive() -> Message:
        nonlocal received
        incoming = await request.receive()
        if incoming["type"] == "http.request":
            received += len(incoming.get("body", b""))
            if received > max_bytes:
                raise RequestTooLarge(message)
        return incoming

    return Request(request.scope, receive)


async def read_json_object(
    request: Request, max_bytes: int, *, keep_text: bool = False, optional: bool = False
) -> dict[str, Any]:
    """The request body as a JSON object, read once; 413 past ``max_bytes``, 400 if not JSON,
    400 naming the field when a string holds what PostgreSQL cannot store (a NUL) — unless
    ``keep_text``: the gateway's bodies go upstream as sent, and the log escapes them. An
    empty body is ``{}`` when ``optional`` (however it was sent: no length, length 0, or an
    empty chunked body), else a 400."""
    too_large = f"The request body is larger than {max_bytes} bytes."
    raw = await _body(limit_body(request, max_bytes, too_large))
    if not raw:
        if optional:
            return {}
        raise InvalidJSON("The request body is empty; send a JSON object.")
    if len(raw) > _LARGE_BODY:
        # orjson reads a large body in one call holding the GIL (tens of ms for 8 MB):
        # in pieces, other requests run between them.
        body = await loads_in_pieces(raw, piece=_PIECE, max_depth=MAX_DEPTH, too_deep=_TOO_DEEP)
    else:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if "surrogate" in str(exc):
                _name_the_surrogate(raw)
            raise InvalidJSON(f"The request body is not valid JSON: {exc}.") from None
        # Fewer brackets than the limit cannot nest past it: most bodies are not walked.
        if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(body, MAX_DEPTH):
            raise InvalidJSON(_TOO_DEEP)
    if not isinstance(body, dict):
        raise InvalidJSON("The request body must be a JSON object.")
    if not keep_text:
        check_storable(body)
    return body


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether ``value`` nests arrays and objects more than ``limit`` levels deep (walked
    without recursion, stopping at the first container past it)."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        container, level = stack.pop()
        if level > limit:
            return True
        items = container.values() if isinstance(container, dict) else container
        stack.extend((item, level + 1) for item in items if isinstance(item, dict | list))
    return False


async def _body(request: Request) -> bytes | bytearray:
    """The body, each byte copied once as it arrives: into a buffer of the declared length
    when it is large (no join of 8 MB at the end, in one piece on the event loop), else
    joined at the end (growing a bytearray chunk by chunk copied it over and over)."""
    size = _content_length(request) or 0
    if size <= _LARGE_BODY:
        return b"".join([chunk async for chunk in request.stream()])
    buffer = bytearray(size)
    filled = 0
    with memoryview(buffer) as view:
        async for chunk in request.stream():
            if filled + len(chunk) > size:  # more than declared: the server frames by it
                raise InvalidJSON("The request body is longer than its Content-Length.")
            view[filled : filled + len(chunk)] = chunk
            filled += len(chunk)
    return buffer if filled == size else buffer[:filled]


def _content_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    return None if declared is None else digits(declared, 0, BIGINT_MAX)


def _name_the_surrogate(raw: bytes | bytearray) -> None:
    """orjson refuses a lone surrogate (``"\\udc80"``) without saying where; the standard
    library reads it, so the 400 can name the field, as for a NUL. Only on this error path."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return
    check_storable(body)
