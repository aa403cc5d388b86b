"""`POST /v1/moderations`: the guard's prompt-injection verdicts in OpenAI's moderation shape."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.errors import InvalidRequest
from propylon.http.auth import authenticate
from propylon.http.context import services
from propylon.http.json import json_response, read_json_object
from propylon.http.openapi import JSON_OBJECT_BODY

router = APIRouter(tags=["guard"])


@router.post("/v1/moderations", openapi_extra=JSON_OBJECT_BODY)
async def create_moderation(request: Request) -> Response:
    """Scores each input for what the guard detects (`prompt_injection` and its families)."""
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes)
    await authenticate(request)
    if svc.moderator is None:
        raise InvalidRequest(
            "Moderation is answered by the guard, which is disabled on this server "
            "(`guard.enabled`).",
            code="guard_disabled",
        )
    return json_response(await svc.moderator.moderate(body))
