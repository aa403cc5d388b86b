"""Background runs over HTTP: start (202), poll, list, cancel, and follow live over a
WebSocket that resumes after the last event id a client saw (`?last_event_id=N` or the
`Last-Event-ID` header), across gateway restarts."""

from __future__ import annotations

from fastapi import APIRouter, Request, WebSocket
from starlette.responses import Response

from propylon.errors import InvalidRequest
from propylon.http.auth import authenticate
from propylon.http.context import services
from propylon.http.json import json_response, read_json_object
from propylon.http.openapi import JSON_OBJECT_BODY
from propylon.http.websocket import serve_feed
from propylon.params import INT_MAX, int_param

router = APIRouter(tags=["runs"])


@router.post("/v1/runs", openapi_extra=JSON_OBJECT_BODY)
async def create_run(request: Request) -> Response:
    """Accept a chat request, a RAG answer, a chain of steps or an agent; 202 with the run id."""
    principal = await authenticate(request)
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes)
    run = await svc.runs.create(principal, body)
    return json_response(run, status=202)


@router.get("/v1/runs")
async def list_runs(request: Request) -> Response:
    """The tenant's runs, newest first: `limit` (1-100, default 50) after the run `after`
    (the last id of the previous page); `has_more` says whether there are older ones."""
    principal = await authenticate(request)
    limit = int_param(request.query_params.get("limit", "50"), "limit", 1, 100)
    after = request.query_params.get("after")
    page = await services(request).runs.list_recent(principal.tenant_id, limit, after)
    return json_response(page)


@router.get("/v1/runs/{run_id}")
async def get_run(run_id: str, request: Request) -> Response:
    """State, step results, partial output and the final result."""
    principal = await authenticate(request)
    return json_response(await services(request).runs.get(principal.tenant_id, run_id))


@router.post("/v1/runs/{run_id}/cancel")
async def cancel_run(run_id: str, request: Request) -> Response:
    """Stop the run, in the middle of a generation if need be."""
    principal = await authenticate(request)
    return json_response(await services(request).runs.cancel(principal.tenant_id, run_id))


@router.post("/v1/runs/{run_id}/approve", openapi_extra=JSON_OBJECT_BODY)
async def approve_run(run_id: str, request: Request) -> Response:
    """Let the tool call an agent run waits on go ahead (optional body `{"note": "…"}`)."""
    return await _decide(request, run_id, approve=True)


@router.post("/v1/runs/{run_id}/deny", openapi_extra=JSON_OBJECT_BODY)
async def deny_run(run_id: str, request: Request) -> Response:
    """Refuse the tool call an agent run waits on; the model is told, and answers without it."""
    return await _decide(request, run_id, approve=False)


async def _decide(request: Request, run_id: str, *, approve: bool) -> Response:
    principal = await authenticate(request)
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes, optional=True)
    note = body.get("note")
    if note is not None and not isinstance(note, str):
        raise InvalidRequest("`note` must be a string.", param="note")
    run = await svc.runs.decide(principal.tenant_id, run_id, approve=approve, note=note)
    return json_response(run)


@router.websocket("/v1/runs/{run_id}/events")
async def run_events(websocket: WebSocket, run_id: str) -> None:
    """Every event after `last_event_id` (default 0), each `{"id", "type", "data"}`, in order;
    closed with 1000 after the run's last event."""
    await serve_feed(
        websocket,
        lambda s, p: s.runs.follow(p.tenant_id, run_id, _last_event_id(websocket)),
    )


def _last_event_id(websocket: WebSocket) -> int:
    raw = websocket.query_params.get("last_event_id") or websocket.headers.get("last-event-id")
    return 0 if raw is None else int_param(raw, "last_event_id", 0, INT_MAX)
