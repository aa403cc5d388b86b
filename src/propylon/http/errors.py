"""One renderer for every error: OpenAI's ``{"error": {...}}`` shape with the right status."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from propylon.db.database import UNAVAILABLE, beyond_limits, unavailable
from propylon.errors import ClientDisconnected, InvalidRequest, NotFound, PropylonError
from propylon.gateway.call import CallInfo
from propylon.http.json import json_response
from propylon.observe.redaction import redact

log = logging.getLogger(__name__)

_HTTP_TYPES = {404: NotFound, 405: InvalidRequest}


def public_error(error: PropylonError) -> dict[str, Any]:
    """The OpenAI error body, its message cleared of anything that looks like a secret: an
    upstream may echo the provider key it was sent, and that key is ours, not the client's."""
    body = error.to_dict()
    body["error"]["message"] = redact(body["error"]["message"])
    return body


def render_error(error: PropylonError, headers: dict[str, str] | None = None) -> Response:
    return json_response(
        public_error(error),
        status=error.http_status,
        headers={**error.headers(), **(headers or {})},
    )


async def _propylon_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, PropylonError)
    call: CallInfo | None = getattr(request.state, "call", None)
    return render_error(exc, call.headers() if call is not None else None)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    kind = _HTTP_TYPES.get(exc.status_code, InvalidRequest)
    error = kind(str(exc.detail))
    body = error.to_dict()
    return json_response(body, status=exc.status_code, headers=dict(exc.headers or {}))


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or None
    message = f"{loc}: {first.get('msg', 'invalid')}" if loc else str(first.get("msg", "invalid"))
    return render_error(InvalidRequest(message, param=loc))


async def _database_unavailable(request: Request, exc: Exception) -> Response:
    down = unavailable(exc)
    if down is None:
        too_large = beyond_limits(exc)
        if too_large is not None:
            log.info("refused by the database's limits", extra={"path": request.url.path})
            return render_error(too_large)
        return await _unexpected(request, exc)
    log.warning("database unavailable", extra={"path": request.url.path, "error": repr(exc)})
    return render_error(down)  # 503 with Retry-After, not a 30 s hang and a 500


async def _client_left(request: Request, exc: Exception) -> Response:
    """The client hung up while its request's body was being read: 499, for the record."""
    return render_error(ClientDisconnected("The client closed the connection mid-request."))


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"path": request.url.path})
    return render_error(PropylonError("The server failed to handle this request."))


async def error_response(request: Request, exc: Exception) -> Response:
    """The response ``install_error_handlers`` gives for ``exc``, for code that runs outside
    FastAPI's exception middleware (``http/hot_routes.py``)."""
    if isinstance(exc, PropylonError):
        return await _propylon_error(request, exc)
    if isinstance(exc, HTTPException):
        return await _http_error(request, exc)
    if isinstance(exc, RequestValidationError):
        return await _validation_error(request, exc)
    if isinstance(exc, ClientDisconnect):
        return await _client_left(request, exc)
    return await _database_unavailable(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(PropylonError, _propylon_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(ClientDisconnect, _client_left)
    for kind in UNAVAILABLE:  # handled like the above: the connection stays usable
        app.add_exception_handler(kind, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)
