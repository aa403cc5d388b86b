"""`GET /v1/models` and `GET /v1/models/{id}`: the configured public models."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.errors import ModelNotAllowed
from propylon.http.auth import authenticate
from propylon.http.context import services
from propylon.http.json import json_response
from propylon.settings import ModelConfig

router = APIRouter()


@router.get("/v1/models", tags=["gateway"])
async def list_models(request: Request) -> Response:
    """The configured models this key may use, in OpenAI's list shape."""
    principal = await authenticate(request)
    data = [
        _model(m)
        for m in services(request).gateway.registry.models
        if m.open_to_every_key or principal.can_use_model(m.name)
    ]
    return json_response({"object": "list", "data": data})


@router.get("/v1/models/{model_id:path}", tags=["gateway"])
async def retrieve_model(request: Request, model_id: str) -> Response:
    """One model by name or alias (404 `model_not_found` otherwise; 403 `model_not_allowed`
    when this key may not use it, as a chat request would be told), in OpenAI's shape."""
    principal = await authenticate(request)
    model = services(request).gateway.registry.find(model_id)
    if not (model.open_to_every_key or principal.can_use_model(model.name)):
        raise ModelNotAllowed(model.name)
    return json_response(_model(model))


def _model(model: ModelConfig) -> dict[str, object]:
    return {
        "id": model.name,
        "object": "model",
        "created": 0,
        "owned_by": "propylon",
        "kind": model.kind,
    }
