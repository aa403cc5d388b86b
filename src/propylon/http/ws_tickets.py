"""`POST /v1/ws-tickets`: a single-use ticket that opens one WebSocket within 30 s.

Browsers offer it as the subprotocol `propylon-ticket.<ticket>` (see ``http/websocket.py``),
so no key ever travels in a URL.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.access.tickets import TICKET_PROTOCOL, TICKET_TTL_S
from propylon.http.auth import authenticate
from propylon.http.context import services
from propylon.http.json import json_response

router = APIRouter()


@router.post("/v1/ws-tickets", tags=["jobs"])
async def create_ws_ticket(request: Request) -> Response:
    """A ticket for the caller's key: offer the subprotocols `propylon` and
    `propylon-ticket.<ticket>` when opening a `/v1/…/events` WebSocket."""
    principal = await authenticate(request)
    ticket = await services(request).tickets.issue(principal)
    return json_response(
        {
            "object": "ws_ticket",
            "ticket": ticket,
            "expires_in": TICKET_TTL_S,
            "subprotocol": TICKET_PROTOCOL + ticket,
        },
        status=201,
    )
