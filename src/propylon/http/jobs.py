"""Background jobs over HTTP: poll (`GET /v1/jobs/{id}`), cancel, and follow live over a
WebSocket (`/v1/jobs/{id}/events`, `/v1/collections/{id}/events`).

The WebSockets authenticate and report failures as ``http/websocket.py`` describes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Request, WebSocket
from starlette.responses import Response

from propylon.http.auth import authenticate
from propylon.http.context import services
from propylon.http.json import json_response
from propylon.http.websocket import serve_feed
from propylon.principal import Principal
from propylon.services import Services

router = APIRouter()


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
    await serve_feed(websocket, lambda s, p: s.job_feeds.follow_job(p.tenant_id, job_id))


@router.websocket("/v1/collections/{collection_id}/events")
async def collection_events(websocket: WebSocket, collection_id: str) -> None:
    """Snapshots of the collection's recent jobs, then every event of its jobs; another
    tenant's or an unknown collection is closed with 4404, like the job and run feeds."""

    async def feed(svc: Services, principal: Principal) -> AsyncIterator[dict[str, Any]]:
        collection = await svc.collections.get(principal.tenant_id, collection_id)
        async for event in svc.job_feeds.follow_collection(
            principal.tenant_id, str(collection["id"])
        ):
            yield event

    await serve_feed(websocket, feed)
