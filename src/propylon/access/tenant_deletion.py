"""``delete_tenant``: a tenant and everything Propylon keeps of it, in one transaction.

The one place that knows every table holding a tenant's rows (``tenant_data.sql``; a test
compares it with every table that has a ``tenant_id`` column, so a new table is not
forgotten): its collections with their documents, chunks and sources, its jobs and runs,
conversations, stored responses, MCP servers, semantic cache entries, request log, feedback,
traces, and last the tenant row with its keys. Every ``serve`` is notified in the same
transaction and drops the keys. The caller purges what lives outside PostgreSQL (the exact
cache in Redis or in memory).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from propylon.access.directory import KeyDirectory
from propylon.access.queries import query
from propylon.db.database import Database
from propylon.db.named_queries import named_queries
from propylon.errors import NotFound

log = logging.getLogger(__name__)

PurgeCache = Callable[[str], Awaitable[object]]
"""Purge a tenant's cached answers where they live outside PostgreSQL (by tenant id)."""


class TenantDeletion:
    """``DELETE /admin/tenants/{ref}``: the rows (``delete_tenant``), then this process's key
    directory (at once; other processes by the notification) and the cache."""

    def __init__(self, database: Database, keys: KeyDirectory, purge_cache: PurgeCache) -> None:
        self._database = database
        self._keys = keys
        self._purge_cache = purge_cache

    async def delete(self, ref: str) -> dict[str, Any]:
        deleted = await delete_tenant(self._database, ref)
        await self._keys.reload()
        try:
            await self._purge_cache(deleted["id"])
        except Exception:  # unreachable entries: the tenant's keys are gone, its id is never reused
            log.exception("could not purge the deleted tenant's cached answers")
        log.info(
            "tenant deleted", extra={"tenant_id": deleted["id"], "removed": deleted["removed"]}
        )
        return deleted


def tenant_tables() -> list[str]:
    """The tables ``delete_tenant`` empties of a tenant's rows, in the order it does."""
    return list(named_queries("propylon.access", "tenant_data.sql"))


async def delete_tenant(database: Database, ref: str) -> dict[str, Any]:
    """Delete the tenant whose id or name is ``ref`` (``NotFound`` when none) and all its
    rows; the rows removed per table (cascaded ones not counted)."""
    statements = named_queries("propylon.access", "tenant_data.sql")
    async with database.connection() as conn:  # one transaction: all of it, or nothing
        cur = await conn.execute(query("tenant_by_ref"), {"ref": ref})
        tenant = await cur.fetchone()
        if tenant is None:
            raise NotFound(f"No tenant {ref!r}.", param="tenant")
        tenant_id = str(tenant["id"])
        removed: dict[str, int] = {}
        for table, statement in statements.items():
            cur = await conn.execute(statement, {"tenant_id": tenant_id})
            removed[table] = cur.rowcount
        await conn.execute(query("notify"), {"payload": f"tenant:{tenant_id}"})
    return {
        "id": tenant_id,
        "object": "tenant.deleted",
        "name": tenant["name"],
        "deleted": True,
        "removed": removed,
    }
