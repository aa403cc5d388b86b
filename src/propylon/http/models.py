"""`GET /v1/models`: the configured public models."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.http.auth import authenticate
from propylon.http.context import services
from propylon.http.json import json_response

router = APIRouter()


@router.get("/v1/models", tags=["gateway"])
async def list_models(request: Request) -> Response:
    """Every configured model, in OpenAI's list shape."""
    await authenticate(request)
    data = [
        {"id": m.name, "object": "model", "created": 0, "owned_by": "propylon", "kind": m.kind}
        for m in services(request).gateway.registry.models
    ]
    return json_response({"object": "list", "data": data})
