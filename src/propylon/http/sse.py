"""Server-sent events for streamed completions.

A stream that fails after its first byte ends with an ``{"error": …}`` event and no
``[DONE]``, so no client mistakes a broken answer for a finished one (the OpenAI SDK raises
``APIError`` on such an event): an unexpected error too, not only ours.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from propylon.errors import ClientDisconnected, PropylonError
from propylon.gateway.protocol import ChatStream
from propylon.http.client_watch import ClientWatch
from propylon.http.errors import public_error

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def event(payload: object) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def sse_body(stream: ChatStream) -> AsyncIterator[bytes]:
    """Encode chunks as SSE; close the upstream stream whatever happens."""
    try:
        async for chunk in stream:
            yield event(chunk)
        yield DONE
    except PropylonError as exc:
        log.warning("stream ended with an error", extra={"code": exc.code})
        yield event(public_error(exc))
    except Exception:  # a bug: the client still learns the answer is broken, not cut
        log.exception("stream failed")
        yield event(public_error(PropylonError("The server failed to finish this stream.")))
    finally:
        await stream.aclose()


async def typed_sse_body(events: AsyncGenerator[dict[str, Any], None]) -> AsyncIterator[bytes]:
    """Encode events named by their ``type`` (the Responses and Messages APIs' streams) as
    ``event: <type>`` SSE; the generator ends its own stream, failures included, and is
    closed here whatever happens (a client that leaves closes the upstream stream too)."""
    try:
        async for payload in events:
            yield b"event: " + str(payload["type"]).encode() + b"\n" + event(payload)
    finally:
        await events.aclose()


def event_stream_response(
    body: AsyncIterator[bytes], headers: dict[str, str]
) -> EventStreamResponse:
    """An SSE response of ``body``, with the no-buffering headers and the call's ``headers``."""
    return EventStreamResponse(body, media_type="text/event-stream", headers={**HEADERS, **headers})


class EventStreamResponse(StreamingResponse):
    """Starlette's ``StreamingResponse``, streamed in the request's own task.

    Under ASGI spec < 2.4 (uvicorn reports 2.3) Starlette runs each stream in an anyio task
    group beside a task that waits for the client's disconnect: about 64 µs of CPU a response,
    measured in process, part of it before the first event. Here the body is sent from the
    request's task under a ``ClientWatch``, which cancels it when the client leaves: the stream
    ends the same way as under Starlette (``sse_body`` closes the upstream stream, the request
    log records ``client_disconnected``) and the response returns normally.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # A stream stopped for a client that left has nothing more to send.
        with contextlib.suppress(ClientDisconnected), ClientWatch(receive):
            await self.stream_response(send)
