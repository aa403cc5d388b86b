"""Background jobs over HTTP: poll (`GET /v1/jobs/{id}`), cancel, and follow live over a
WebSocket (`/v1/jobs/{id}/events`, `/v1/collections/{id}/events`).

WebSockets authenticate like every `/v1` route (`Authorization: Bearer <key>`), or with
`?api_key=<key>` for browsers, which cannot set headers on a WebSocket. A failure is sent as one
`{"type": "error", "error": {...}}` message in OpenAI's shape, then the socket is closed with
code 4000 + the HTTP status (4401, 4403, 4404).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import APIRouter, Request, WebSocket
from starlette.responses import Response
from starlette.websockets import WebSocketDisconnect, WebSocketState

from propylon.errors import PropylonError
from propylon.http.auth import authenticate
from propylon.http.context import services
from propylon.http.errors import public_error
from propylon.http.json import json_response
from propylon.principal import Principal
from propylon.services import Services

router = APIRouter()

Feed = Callable[[Services, Principal], AsyncIterator[dict[str, Any]]]


@router.get("/v1/jobs/{job_id}", tags=["jobs"])
async def get_job(job_id: str, request: Request) -> Response:
    """The job's state, stage, attempts, progress and stage times (404 for another tenant's)."""
    principal = await authenticate(request)
    view = await services(request).jobs.get(principal.tenant_id, job_id)
    return json_response(view.to_dict())


@router.post("/v1/jobs/{job_id}/cancel", tags=["jobs"])
async def cancel_job(job_id: str, request: Request) -> Response:
    """Cancel the job; a running one is stopped and the answer shows it `cancelled`."""
    principal = await authenticate(request)
    view = await services(request).jobs.cancel(principal.tenant_id, job_id)
    return json_response(view.to_dict())


@router.websocket("/v1/jobs/{job_id}/events")
async def job_events(websocket: WebSocket, job_id: str) -> None:
    """A snapshot of the job, then its events in order; closed after the terminal one."""
    await _stream(websocket, lambda s, p: s.job_feeds.follow_job(p.tenant_id, job_id))


@router.websocket("/v1/collections/{collection_id}/events")
async def collection_events(websocket: WebSocket, collection_id: str) -> None:
    """Snapshots of the collection's recent jobs, then every event of its jobs."""
    await _stream(websocket, lambda s, p: s.job_feeds.follow_collection(p.tenant_id, collection_id))


async def _stream(websocket: WebSocket, feed: Feed) -> None:
    await websocket.accept()
    running: Services = websocket.app.state.services
    try:
        token = _token(websocket)
        principal = await running.keys.authenticate(token)
        sender = asyncio.create_task(_send_all(websocket, feed(running, principal)))
        reader = asyncio.create_task(_until_disconnect(websocket))
        done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        for task in (sender, reader):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
            await reader
        if sender not in done:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await sender
            return
        await sender  # re-raises a PropylonError (e.g. 404) to report it below
        await _close(websocket, 1000)
    except PropylonError as error:
        with contextlib.suppress(Exception):
            await websocket.send_text(
                orjson.dumps({"type": "error", **public_error(error)}).decode()
            )
        await _close(websocket, 4000 + error.http_status)
    except WebSocketDisconnect:
        return


async def _send_all(websocket: WebSocket, events: AsyncIterator[dict[str, Any]]) -> None:
    try:
        async for event in events:
            await websocket.send_text(orjson.dumps(event).decode())
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


async def _until_disconnect(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _close(websocket: WebSocket, code: int) -> None:
    if websocket.application_state != WebSocketState.DISCONNECTED:
        with contextlib.suppress(Exception):
            await websocket.close(code)


def _token(websocket: WebSocket) -> str | None:
    scheme, _, token = websocket.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return websocket.query_params.get("api_key") or None
