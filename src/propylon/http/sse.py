"""Server-sent events for streamed completions.

A stream that fails after its first byte ends with an ``{"error": …}`` event and no
``[DONE]``, so no client mistakes a broken answer for a finished one (the OpenAI SDK raises
``APIError`` on such an event).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import orjson

from propylon.errors import PropylonError
from propylon.gateway.protocol import ChatStream
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
    finally:
        await stream.aclose()
