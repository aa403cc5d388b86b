"""Server-sent events, paced like a model and broken when a stream fault says so."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from propylon.testing.wire_error import WireError

if TYPE_CHECKING:
    from propylon.testing.exchange import Exchange


def sse_event(data: bytes, event: str | None = None) -> bytes:
    """One SSE event; Anthropic names its events, OpenAI sends bare ``data:`` lines."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + data + b"\n\n"


class EventStream:
    """Writes the events of one streamed answer.

    Pacing: ``ttft_ms`` passes before the first event, and ``1 / tokens_per_second``
    between consecutive token events. A ``stream_cut`` or ``stream_error`` fault strikes
    instead of event number ``after_chunks + 1``; a stream with fewer events completes.
    """

    def __init__(self, exchange: Exchange, response: web.StreamResponse) -> None:
        self._exchange = exchange
        self._response = response
        self._events = 0
        self._tokens = 0

    async def send(self, data: bytes, *, event: str | None = None, token: bool = False) -> None:
        """Send one event; ``token`` marks events that carry generated text."""
        behaviour = self._exchange.behaviour
        if self._events == 0:
            await self._exchange.pause(behaviour.ttft_ms / 1000)
        elif token and self._tokens > 0 and behaviour.tokens_per_second > 0:
            await self._exchange.pause(1 / behaviour.tokens_per_second)
        await self._strike_if_due()
        await self._response.write(sse_event(data, event))
        self._events += 1
        if token:
            self._tokens += 1

    async def close(self) -> web.StreamResponse:
        """Finish the body cleanly; the response is what the handler returns."""
        await self._response.write_eof()
        return self._response

    async def _strike_if_due(self) -> None:
        fault = self._exchange.fault
        if fault is None or self._events != fault.after_chunks:
            return
        if fault.kind == "stream_cut":
            self._exchange.drop(reset=False)
        if fault.kind == "stream_error":
            error = WireError(fault.status, fault.message)
            await self._response.write(self._exchange.dialect.error_event(error))
            await self._response.write_eof()
            self._exchange.end_early(self._response)
