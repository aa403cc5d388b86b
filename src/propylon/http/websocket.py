"""Live feeds over WebSockets (job events, run events): one way to authenticate and fail.

A WebSocket authenticates like every `/v1` route (`Authorization: Bearer <key>`), or, for
browsers, which cannot set headers on a WebSocket, with a single-use ticket from
`POST /v1/ws-tickets` offered as the subprotocol `propylon-ticket.<ticket>` (next to
`propylon`, which the server then selects). A key in the URL (`?api_key=`) is refused: URLs
reach access logs. A failure is sent as one `{"type": "error", "error": {...}}` message in
OpenAI's shape, then the socket is closed with code 4000 + the HTTP status (4400, 4401, 4403,
4404; 4503 while the database is away).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from propylon.access.tickets import ticket_from_protocols
from propylon.db.database import UNAVAILABLE, unavailable
from propylon.errors import AuthenticationFailed, PropylonError
from propylon.http.auth import bearer_token
from propylon.http.errors import public_error
from propylon.principal import Principal
from propylon.services import Services

SUBPROTOCOL = "propylon"

Feed = Callable[[Services, Principal], AsyncIterator[dict[str, Any]]]


async def serve_feed(websocket: WebSocket, feed: Feed) -> None:
    """Authenticate, then send every event of ``feed`` until it ends (close 1000) or the
    client leaves; a ``PropylonError`` is reported as the module docstring says."""
    offered = websocket.scope.get("subprotocols", [])
    await websocket.accept(subprotocol=SUBPROTOCOL if SUBPROTOCOL in offered else None)
    running: Services = websocket.app.state.services
    try:
        principal = await _authenticate(websocket, running, offered)
        sender = asyncio.create_task(_send_all(websocket, feed(running, principal)))
        reader = asyncio.create_task(_until_disconnect(websocket))
        done, _ = await asyncio.wait({sender, reader}, return_when=asyncio.FIRST_COMPLETED)
        for task in (sender, reader):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
            await reader
        if sender not in done:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await sender
            return
        await sender  # re-raises a PropylonError (e.g. 404) to report it below
        await _close(websocket, 1000)
    except PropylonError as error:
        await _refuse(websocket, error)
    except WebSocketDisconnect:
        return
    except UNAVAILABLE as exc:  # the database is away: 4503, as a route answers 503
        down = unavailable(exc)
        assert down is not None
        await _refuse(websocket, down)


async def _refuse(websocket: WebSocket, error: PropylonError) -> None:
    with contextlib.suppress(Exception):
        await websocket.send_text(orjson.dumps({"type": "error", **public_error(error)}).decode())
    await _close(websocket, 4000 + error.http_status)


async def _send_all(websocket: WebSocket, events: AsyncIterator[dict[str, Any]]) -> None:
    try:
        async for event in events:
            await websocket.send_text(orjson.dumps(event).decode())
    finally:
        aclose = getattr(events, "aclose", None)
        if aclose is not None:
            await aclose()


async def _until_disconnect(websocket: WebSocket) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return


async def _close(websocket: WebSocket, code: int) -> None:
    if websocket.application_state != WebSocketState.DISCONNECTED:
        with contextlib.suppress(Exception):
            await websocket.close(code)


async def _authenticate(websocket: WebSocket, running: Services, offered: list[str]) -> Principal:
    if "api_key" in websocket.query_params:
        raise AuthenticationFailed(
            "API keys are not accepted in URLs (they reach access logs). Send "
            "`Authorization: Bearer <key>`, or a ticket from POST /v1/ws-tickets as the "
            "subprotocol `propylon-ticket.<ticket>`.",
            code="api_key_in_url",
        )
    ticket = ticket_from_protocols(offered)
    if ticket is not None and bearer_token(websocket) is None:
        return await running.tickets.redeem(ticket)
    return await running.keys.authenticate(bearer_token(websocket))
