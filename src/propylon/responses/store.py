"""Stored responses, per tenant, in PostgreSQL (``queries.sql``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from propylon.db.database import Database
from propylon.db.named_queries import named_queries
from propylon.errors import NotFound, ServiceUnavailable
from propylon.gateway.protocol import JSONObject
from propylon.storable import storable_json


def _q(name: str) -> Any:
    return named_queries("propylon.responses")[name]


@dataclass(slots=True)
class StoredResponse:
    response: JSONObject
    conversation: list[JSONObject]  # chat turns so far, without instructions


class ResponseStore:
    """Responses by id, each visible to its own tenant only. A save waits at most
    ``timeout_s`` for a connection, so a database outage delays an answer little and fails
    a lookup with 503 ``service_unavailable``."""

    def __init__(self, database: Database, *, timeout_s: float = 3.0) -> None:
        self._database = database
        self._timeout_s = timeout_s

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection[DictRow]]:
        try:
            async with self._database.connection(timeout=self._timeout_s) as conn:
                yield conn
        except (psycopg.Error, OSError) as exc:  # PoolTimeout is a psycopg.Error
            raise ServiceUnavailable(
                "Stored responses are unavailable (the database does not answer); "
                "try again shortly.",
                retry_after=5.0,
            ) from exc

    async def save(
        self, tenant_id: str, response: JSONObject, conversation: list[JSONObject]
    ) -> None:
        async with self._connection() as conn:
            await conn.execute(
                _q("insert_response"),
                {
                    "id": response["id"],
                    "tenant_id": tenant_id,
                    "response": Jsonb(storable_json(response)),
                    "conversation": Jsonb(storable_json(conversation)),
                },
            )

    async def get(self, tenant_id: str, response_id: str) -> StoredResponse:
        async with self._connection() as conn:
            cur = await conn.execute(
                _q("get_response"), {"id": response_id, "tenant_id": tenant_id}
            )
            row = await cur.fetchone()
        if row is None:
            raise _not_found(response_id)
        return StoredResponse(row["response"], row["conversation"])

    async def delete(self, tenant_id: str, response_id: str) -> None:
        async with self._connection() as conn:
            cur = await conn.execute(
                _q("delete_response"), {"id": response_id, "tenant_id": tenant_id}
            )
            if await cur.fetchone() is None:
                raise _not_found(response_id)


def _not_found(response_id: str) -> NotFound:
    return NotFound(
        f"No response with id `{response_id}` (responses are kept when `store` is not false).",
        param="response_id",
        code="response_not_found",
    )
