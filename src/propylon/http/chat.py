"""`POST /v1/chat/completions`: parse, call the gateway, render."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.gateway.call import CallInfo
from propylon.http.auth import authenticate
from propylon.http.client_watch import ClientWatch
from propylon.http.context import services
from propylon.http.json import json_response, read_json_object
from propylon.http.openapi import JSON_OBJECT_BODY
from propylon.http.sse import HEADERS, EventStreamResponse, sse_body

router = APIRouter()


@router.post("/v1/chat/completions", openapi_extra=JSON_OBJECT_BODY, tags=["gateway"])
async def chat_completions(request: Request) -> Response:
    """OpenAI-compatible chat completions, streamed when `stream` is true."""
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes, keep_text=True)
    call = request.state.call = CallInfo(
        principal=await authenticate(request),
        cache_control=request.headers.get("cache-control"),
    )
    with ClientWatch(request.receive):
        if body.get("stream") is True:
            stream = await svc.chat.stream(body, call)
            return EventStreamResponse(
                sse_body(stream),
                media_type="text/event-stream",
                headers={**HEADERS, **call.headers()},
            )
        result = await svc.chat.complete(body, call)
    return json_response(result, headers=call.headers())
