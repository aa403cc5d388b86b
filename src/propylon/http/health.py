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
    """The database answers; otherwise 503 so a load balancer routes elsewhere."""
    if await services(request).database.ping():
        return json_response({"status": "ready", "database": "ok"})
    return json_response({"status": "not ready", "database": "unreachable"}, status=503)
