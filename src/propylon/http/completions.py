"""`POST /v1/completions`: OpenAI's legacy text completions, relayed to deployments that
have them, through the chat request path."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.http.api_call import open_call
from propylon.http.client_watch import ClientWatch
from propylon.http.context import services
from propylon.http.json import json_response
from propylon.http.openapi import JSON_OBJECT_BODY
from propylon.http.sse import event_stream_response, sse_body

router = APIRouter(tags=["gateway"])


@router.post("/v1/completions", openapi_extra=JSON_OBJECT_BODY)
async def create_completion(request: Request) -> Response:
    """A legacy text completion, streamed when `stream` is true."""
    svc = services(request)
    body, call = await open_call(request, "completions")
    with ClientWatch(request.receive):
        if body.get("stream") is True:
            stream = await svc.completions.stream(body, call)
            return event_stream_response(sse_body(stream), call.headers())
        completion = await svc.completions.create(body, call)
    return json_response(completion, headers=call.headers())
