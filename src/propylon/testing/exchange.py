"""One request to the fake upstream, with what its handler needs to answer or to fail."""

from __future__ import annotations

import asyncio
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, NoReturn

import orjson
from aiohttp import web

from propylon.testing.behaviour import Behaviour, Fault
from propylon.testing.dialect import Dialect
from propylon.testing.event_stream import EventStream


class Interrupted(Exception):
    """Unwinds a handler that dropped its connection or ended its stream early."""

    def __init__(self, response: web.StreamResponse | None) -> None:
        super().__init__("interrupted")
        self.response = response


@dataclass(slots=True)
class Exchange:
    """The request, its parsed body, the behaviour that applies, and the fault drawn for it."""

    request: web.Request
    body: dict[str, Any]
    behaviour: Behaviour
    fault: Fault | None
    dialect: Dialect
    stopping: asyncio.Event
    request_id: str = field(init=False)

    def __post_init__(self) -> None:
        self.request_id = self.dialect.new_request_id()

    @property
    def headers(self) -> dict[str, str]:
        """Headers every answer carries, as the provider's request id."""
        return {self.dialect.request_id_header: self.request_id}

    async def pause(self, seconds: float) -> None:
        """Wait, unless the server stops meanwhile: then drop the connection at once."""
        if seconds > 0:
            try:
                async with asyncio.timeout(seconds):
                    await self.stopping.wait()
            except TimeoutError:
                return
        if self.stopping.is_set():
            self.drop(reset=True)

    async def wait_for(self, event: asyncio.Event) -> None:
        """Wait for ``event``, unless the server stops meanwhile: then drop the connection."""
        stopping = asyncio.ensure_future(self.stopping.wait())
        released = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait((stopping, released), return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            released.cancel()
        if self.stopping.is_set():
            self.drop(reset=True)

    def drop(self, *, reset: bool) -> NoReturn:
        """Close the connection without finishing the response.

        ``reset`` sends a TCP RST (clients see "connection reset"), discarding unsent
        bytes; otherwise a FIN after the bytes already written (a truncated body).
        """
        transport = self.request.transport
        if transport is not None:
            sock = transport.get_extra_info("socket")
            if reset and sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
            else:
                transport.close()
        raise Interrupted(None)

    def end_early(self, response: web.StreamResponse) -> NoReturn:
        """Stop the handler after it finished a response on its own terms."""
        raise Interrupted(response)

    def json(self, payload: object, status: int = 200) -> web.Response:
        """A JSON answer with the provider's headers."""
        return web.Response(
            body=orjson.dumps(payload),
            status=status,
            content_type="application/json",
            headers=self.headers,
        )

    async def open_stream(self) -> EventStream:
        """Send the headers of an SSE answer and return its event writer."""
        response = web.StreamResponse(
            headers={**self.headers, "Cache-Control": "no-cache"},
        )
        response.content_type = "text/event-stream"
        response.charset = "utf-8"
        await response.prepare(self.request)
        return EventStream(self, response)
