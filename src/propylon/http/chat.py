"""`POST /v1/chat/completions`: parse, call the gateway, render."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from propylon.gateway.call import CallInfo
from propylon.http.context import services
from propylon.http.json import json_response, read_json_object
from propylon.http.sse import HEADERS, sse_body

router = APIRouter()

_BODY_DOC = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


@router.post("/v1/chat/completions", openapi_extra=_BODY_DOC, tags=["gateway"])
async def chat_completions(request: Request) -> Response:
    """OpenAI-compatible chat completions, streamed when `stream` is true."""
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes)
    call = request.state.call = CallInfo()
    if body.get("stream") is True:
        stream = await svc.gateway.stream(body, call)
        return StreamingResponse(
            sse_body(stream),
            media_type="text/event-stream",
            headers={**HEADERS, **call.headers()},
        )
    result = await svc.gateway.complete(body, call)
    return json_response(result, headers=call.headers())
