"""`GET /metrics`: Prometheus exposition of this process's metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.http.context import services

router = APIRouter()


@router.get("/metrics", tags=["observability"], include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Every Propylon series (see docs/operations.md). Unauthenticated, like most exporters:
    expose it on an internal network only."""
    body, content_type = await services(request).observe.metrics.render()
    return Response(body, media_type=content_type)
