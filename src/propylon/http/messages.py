"""`/v1/messages` and `/v1/messages/count_tokens`: Anthropic's Messages API, answered by the
chat request path. Every error is rendered in Anthropic's shape,
``{"type": "error", "error": {"type", "message"}}``, with the status OpenAI's would have."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.errors import PropylonError
from propylon.gateway.call import CallInfo
from propylon.gateway.providers.anthropic_translation import anthropic_error
from propylon.http.api_call import open_call
from propylon.http.client_watch import ClientWatch
from propylon.http.context import services
from propylon.http.json import json_response
from propylon.http.openapi import JSON_OBJECT_BODY
from propylon.http.sse import event_stream_response, typed_sse_body

router = APIRouter(tags=["gateway"])


async def _in_anthropic_shape(
    request: Request, handle: Callable[[Request], Awaitable[Response]]
) -> Response:
    try:
        return await handle(request)
    except PropylonError as exc:
        call: CallInfo | None = getattr(request.state, "call", None)
        headers = {**(call.headers() if call is not None else {}), **exc.headers()}
        return json_response(anthropic_error(exc), status=exc.http_status, headers=headers)


async def _create(request: Request) -> Response:
    body, call = await open_call(request, "messages")
    messages = services(request).messages
    with ClientWatch(request.receive):
        if body.get("stream") is True:
            events = await messages.stream(body, call)
            return event_stream_response(typed_sse_body(events), call.headers())
        message = await messages.create(body, call)
    return json_response(message, headers=call.headers())


async def _count(request: Request) -> Response:
    body, call = await open_call(request, "messages")
    return json_response(await services(request).messages.count_tokens(body, call))


@router.post("/v1/messages", openapi_extra=JSON_OBJECT_BODY)
async def create_message(request: Request) -> Response:
    """A model's message (Anthropic's API); with `stream`, Anthropic's named events."""
    return await _in_anthropic_shape(request, _create)


@router.post("/v1/messages/count_tokens", openapi_extra=JSON_OBJECT_BODY)
async def count_message_tokens(request: Request) -> Response:
    """The input tokens of a Messages request, counted offline."""
    return await _in_anthropic_shape(request, _count)
