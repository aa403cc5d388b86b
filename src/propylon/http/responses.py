"""`/v1/responses`: OpenAI's Responses API, answered by the chat request path."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.http.api_call import open_call
from propylon.http.auth import authenticate
from propylon.http.client_watch import ClientWatch
from propylon.http.context import services
from propylon.http.json import json_response
from propylon.http.openapi import JSON_OBJECT_BODY
from propylon.http.sse import event_stream_response, typed_sse_body

router = APIRouter(tags=["gateway"])


@router.post("/v1/responses", openapi_extra=JSON_OBJECT_BODY)
async def create_response(request: Request) -> Response:
    """A model response; with `stream`, its typed events (`response.created` …)."""
    svc = services(request)
    body, call = await open_call(request, "responses")
    with ClientWatch(request.receive):
        if body.get("stream") is True:
            events = await svc.responses.stream(body, call)
            return event_stream_response(typed_sse_body(events), call.headers())
        response = await svc.responses.create(body, call)
    return json_response(response, headers=call.headers())


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request) -> Response:
    """A stored response of the caller's tenant."""
    principal = await authenticate(request)
    response = await services(request).responses.get(principal.tenant_id, response_id)
    return json_response(response)


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> Response:
    principal = await authenticate(request)
    deleted = await services(request).responses.delete(principal.tenant_id, response_id)
    return json_response(deleted)
