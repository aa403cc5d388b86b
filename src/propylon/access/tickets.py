"""``SocketTickets``: short-lived, single-use tickets that open one WebSocket.

Browsers cannot set ``Authorization`` on a WebSocket, and a key in the URL reaches every
access log on the way. So a client first asks ``POST /v1/ws-tickets`` (with its key in the
header) for a ticket, then offers it as the subprotocol ``propylon-ticket.<ticket>``. A
ticket is valid for ``TICKET_TTL_S`` seconds and for one socket: redeeming deletes it, in the
database, so it holds across replicas. Only its SHA-256 is stored.
"""

from __future__ import annotations

import hashlib
import secrets

from propylon.access.directory import KeyDirectory
from propylon.access.queries import query
from propylon.db.database import Database
from propylon.errors import AuthenticationFailed, PermissionDenied
from propylon.principal import Principal

TICKET_TTL_S = 30
TICKET_PROTOCOL = "propylon-ticket."  # + the ticket: one offered subprotocol
_TICKET_BYTES = 24


class SocketTickets:
    def __init__(self, database: Database, directory: KeyDirectory) -> None:
        self._database = database
        self._directory = directory

    async def issue(self, principal: Principal) -> str:
        """A new ticket for ``principal``'s key (an API key: the admin key has no tenant)."""
        if principal.key_id is None:
            raise PermissionDenied(
                "WebSocket tickets are for API keys; the admin key has no tenant feeds.",
                code="api_key_required",
            )
        ticket = secrets.token_urlsafe(_TICKET_BYTES)
        async with self._database.connection() as conn:
            await conn.execute(
                query("issue_ticket"),
                {"ticket_hash": _hash(ticket), "key_id": principal.key_id, "ttl_s": TICKET_TTL_S},
            )
        return ticket

    async def redeem(self, ticket: str) -> Principal:
        """The principal the ticket was issued to; 401 when unknown, used or expired,
        403 when its key has been revoked since."""
        async with self._database.connection() as conn:
            cur = await conn.execute(query("redeem_ticket"), {"ticket_hash": _hash(ticket)})
            row = await cur.fetchone()
        record = None if row is None else self._directory.record(str(row["key_id"]))
        if record is None:
            raise AuthenticationFailed(
                "Unknown, used or expired WebSocket ticket; ask POST /v1/ws-tickets for one.",
                code="invalid_ticket",
            )
        if record.revoked:
            raise PermissionDenied(
                f"The API key {record.prefix}… has been revoked.", code="api_key_revoked"
            )
        return record.principal()


def ticket_from_protocols(offered: list[str]) -> str | None:
    """The ticket among the offered subprotocols, if any."""
    for protocol in offered:
        if protocol.startswith(TICKET_PROTOCOL):
            return protocol[len(TICKET_PROTOCOL) :] or None
    return None


def _hash(ticket: str) -> bytes:
    return hashlib.sha256(ticket.encode()).digest()
