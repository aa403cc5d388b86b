"""Refuses a NUL in a request's path or query string before routing: 400 naming the query
parameter (or the path), instead of a database error deep inside a route.

The common case costs two substring searches. Path and query are decoded by the server with
replacement characters, so a lone surrogate cannot arrive here; bodies are checked where they
are parsed (``read_json_object``, the upload form).
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from propylon.errors import InvalidRequest
from propylon.http.errors import error_response
from propylon.storable import check_storable


class RefuseUnstorableText:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            problem = _problem(scope)
            if problem is not None:
                request = Request(scope, receive, send)
                response = await error_response(request, problem)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _problem(scope: Scope) -> InvalidRequest | None:
    query: bytes = scope.get("query_string", b"")
    path: str = scope["path"]
    if "\x00" not in path and b"%00" not in query and b"\x00" not in query:
        return None
    try:
        check_storable(path, "path")
        for name, value in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
            check_storable({name: value})
    except InvalidRequest as exc:
        return exc
    return None
