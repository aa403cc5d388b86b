"""JSON in and out of the HTTP layer, with orjson and a hard size limit."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from propylon.errors import InvalidJSON, RequestTooLarge
from propylon.storable import check_storable

_LARGE_BODY = 1 << 20  # bytes past which parsing the body is worth a turn of the event loop


def json_response(
    body: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        orjson.dumps(body), status_code=status, headers=headers, media_type="application/json"
    )


def limit_body(request: Request, max_bytes: int, message: str) -> Request:
    """``request`` whose body raises ``RequestTooLarge(message)`` as soon as more than
    ``max_bytes`` have arrived: at once when ``Content-Length`` says so, else while it streams
    in (chunked uploads declare no length), so nothing past the limit is read or spooled."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
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
    request: Request, max_bytes: int, *, keep_text: bool = False
) -> dict[str, Any]:
    """The request body as a JSON object, read once; 413 past ``max_bytes``, 400 if not JSON,
    400 naming the field when a string holds what PostgreSQL cannot store (a NUL) — unless
    ``keep_text``: the gateway's bodies go upstream as sent, and the log escapes them."""
    too_large = f"The request body is larger than {max_bytes} bytes."
    # Joined once at the end: growing a bytearray chunk by chunk copied an 8 MB body about
    # eight times over (reallocations), on the event loop.
    chunks = [chunk async for chunk in limit_body(request, max_bytes, too_large).stream()]
    raw = b"".join(chunks)
    if not raw:
        raise InvalidJSON("The request body is empty; send a JSON object.")
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "surrogate" in str(exc):
            _name_the_surrogate(bytes(raw))
        raise InvalidJSON(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(body, dict):
        raise InvalidJSON("The request body must be a JSON object.")
    if not keep_text:
        check_storable(body)
    if len(raw) > _LARGE_BODY:
        await asyncio.sleep(0)  # parsing took milliseconds: let other requests run first
    return body


def _name_the_surrogate(raw: bytes) -> None:
    """orjson refuses a lone surrogate (``"\\udc80"``) without saying where; the standard
    library reads it, so the 400 can name the field, as for a NUL. Only on this error path."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return
    check_storable(body)
