"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.http.context import services
from propylon.http.json import json_response

router = APIRouter()


@router.get("/healthz", tags=["health"])
async def healthz() -> Response:
    """The process is up and serving HTTP."""
    return json_response({"status": "ok"})


@router.get("/readyz", tags=["health"])
async def readyz(request: Request) -> Response:
    """The database answers and every background writer can write; otherwise 503 so a load
    balancer routes elsewhere (and the body says which)."""
    svc = services(request)
    database = await svc.database.ping()
    failing = sorted(w.name for w in svc.writers if not w.healthy)
    body = {
        "status": "ready" if database and not failing else "not ready",
        "database": "ok" if database else "unreachable",
        "writers": {w.name: "ok" if w.healthy else "failing" for w in svc.writers},
    }
    return json_response(body, status=200 if database and not failing else 503)
