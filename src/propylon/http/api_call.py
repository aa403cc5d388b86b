"""The start of a call on the chat request path from any of the client APIs' routes."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request

from propylon.gateway.call import CallInfo
from propylon.http.auth import authenticate
from propylon.http.context import services
from propylon.http.json import read_json_object


async def open_call(request: Request, api: str) -> tuple[dict[str, Any], CallInfo]:
    """The body (a JSON object, size-limited) and the call's ``CallInfo`` for the key that
    sent it, kept on ``request.state`` so error responses carry the call's headers too.
    (``/v1/chat/completions`` does the same inline: it is the hot path.)"""
    body = await read_json_object(request, services(request).settings.max_body_bytes)
    call = request.state.call = CallInfo(
        principal=await authenticate(request),
        api=api,
        cache_control=request.headers.get("cache-control"),
    )
    return body, call
