"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.http.context import services
from propylon.http.json import json_response

router = APIRouter()


# HEAD too: uptime checks and load balancers often probe with it (uvicorn sends no body).
@router.api_route("/healthz", methods=["GET", "HEAD"], tags=["health"])
async def healthz() -> Response:
    """The process is up and serving HTTP."""
    return json_response({"status": "ok"})


@router.api_route("/readyz", methods=["GET", "HEAD"], tags=["health"])
async def readyz(request: Request) -> Response:
    """The database answers, every background writer can write and no model failed to load;
    otherwise 503 so a load balancer routes elsewhere (and the body says which). A model not
    loaded yet is ready: the first request that needs it loads it (``local/lazy.py``)."""
    svc = services(request)
    database = await svc.database.ping()
    failing = sorted(w.name for w in svc.writers if not w.healthy)
    broken = [m for m in svc.models if m.state == "failed"]
    ready = database and not failing and not broken
    body = {
        "status": "ready" if ready else "not ready",
        "database": "ok" if database else "unreachable",
        "writers": {w.name: "ok" if w.healthy else "failing" for w in svc.writers},
        "models": {m.name: m.error or m.state for m in svc.models},
    }
    return json_response(body, status=200 if ready else 503)
