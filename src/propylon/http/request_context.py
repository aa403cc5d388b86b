"""Per-request context for every HTTP request (pure ASGI, so streams are not buffered).

* accepts the caller's ``x-request-id`` (or makes one), puts it in the JSON logs, and returns
  it on the response;
* adds ``x-propylon-overhead-ms`` to every response: the time spent in Propylon until the
  response started, less the time spent waiting on upstreams;
* makes sure every non-GET ``/v1`` request gets one request-log record: the request path
  records those that reach it; this records the ones refused before (bad JSON, 401…).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from propylon.gateway.call import CallInfo
from propylon.observe.context import RequestContext, current_request, new_request_id
from propylon.observe.recorded import METADATA_HEADER

log = logging.getLogger("propylon.access")

_RECORDED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_ERROR_BODY = 8192


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        ctx = RequestContext(
            request_id=new_request_id(headers.get("x-request-id")),
            path=scope["path"],
            method=scope["method"],
            metadata_header=headers.get(METADATA_HEADER),
        )
        state: dict[str, Any] = scope.setdefault("state", {})
        recordable = ctx.path.startswith("/v1/") and ctx.method in _RECORDED_METHODS
        status = 500
        error_body: list[bytes] | None = None
        answered = False  # the response's last body message went out

        async def send_with_headers(message: Message) -> None:
            nonlocal status, error_body, answered
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                answered = True
            if message["type"] == "http.response.start":
                status = message["status"]
                call: CallInfo | None = state.get("call")
                elapsed_ms = (time.perf_counter() - ctx.started) * 1000.0
                upstream_ms = call.upstream_ms if call is not None else 0.0
                out = MutableHeaders(scope=message)
                out["x-request-id"] = ctx.request_id
                out["x-propylon-overhead-ms"] = f"{max(elapsed_ms - upstream_ms, 0.0):.2f}"
                if recordable and status >= 400 and not ctx.recorded:
                    error_body = []
            elif (
                message["type"] == "http.response.body"
                and error_body is not None
                and sum(map(len, error_body)) < _MAX_ERROR_BODY
            ):
                error_body.append(message.get("body", b""))
            await send(message)

        token = current_request.set(ctx)
        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Starlette's last-resort handler answers 500 (``errors._unexpected``, which logs
            # the error) and then raises the error again; uvicorn would then close the
            # connection under the client's next request on it. Answered, it ends here.
            if not (answered and status == 500):
                raise
        finally:
            if recordable and not ctx.recorded:
                _record_unserved(scope, ctx, state.get("call"), status, error_body)
            services = getattr(scope["app"].state, "services", None)
            if services is None or services.observe.access_log:
                log.info(
                    "request",
                    extra={
                        "method": ctx.method,
                        "path": ctx.path,
                        "status": status,
                        "duration_ms": round((time.perf_counter() - ctx.started) * 1000.0, 2),
                    },
                )
            current_request.reset(token)


def _record_unserved(
    scope: Scope,
    ctx: RequestContext,
    call: CallInfo | None,
    status: int,
    error_body: list[bytes] | None,
) -> None:
    services = getattr(scope["app"].state, "services", None)
    if services is None:
        return
    error_type, error_code = _error_of(b"".join(error_body) if error_body else b"")
    if status >= 400 and error_type is None:
        error_type = "server_error" if status >= 500 else "invalid_request_error"
    services.observe.recorder.finish_unserved(ctx, call, status, error_type, error_code)


def _error_of(body: bytes) -> tuple[str | None, str | None]:
    try:
        error = orjson.loads(body).get("error") if body else None
    except (orjson.JSONDecodeError, AttributeError):
        return None, None
    if not isinstance(error, dict):
        return None, None
    kind, code = error.get("type"), error.get("code")
    return (
        kind if isinstance(kind, str) else None,
        code if isinstance(code, str) else None,
    )
