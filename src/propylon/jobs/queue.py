"""The job queue's client side: enqueue, read, cancel. Workers are in ``worker.py``.

Jobs live in PostgreSQL (``jobs`` table, migration 0004); see docs/architecture.md, Jobs, for
the design: ``FOR UPDATE SKIP LOCKED`` claims, leases renewed by heartbeats, a reaper.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from propylon.db.database import Database
from propylon.errors import InvalidRequest, NotFound
from propylon.jobs import store
from propylon.jobs.progress import ProgressHub
from propylon.jobs.queries import query
from propylon.jobs.view import TERMINAL_STATES, JobView


class JobQueue:
    """Enqueue jobs and read or cancel them, always within one tenant."""

    def __init__(self, database: Database, hub: ProgressHub, *, cancel_wait_s: float) -> None:
        self._database = database
        self._hub = hub
        self._cancel_wait_s = cancel_wait_s

    async def enqueue(
        self,
        *,
        tenant_id: str,
        kind: str,
        payload: dict[str, Any],
        collection_id: str | None = None,
        max_attempts: int = 3,
        dedupe_key: str | None = None,
        conn: AsyncConnection[Any] | None = None,
    ) -> str:
        """Queue a job and return its id.

        With ``conn``, the job is written in the caller's transaction and becomes visible to
        workers when it commits. With ``dedupe_key``, a queued or running job of the same tenant,
        kind and key is returned instead of a new one.
        """
        if max_attempts < 1:
            raise InvalidRequest("max_attempts must be at least 1", param="max_attempts")
        params = {
            "tenant_id": tenant_id,
            "kind": kind,
            "collection_id": collection_id,
            "payload": Jsonb(payload),
            "dedupe_key": dedupe_key,
            "max_attempts": max_attempts,
        }
        async with self._connection(conn) as c:
            for _ in range(3):  # the live duplicate may finish between the two statements
                view = await store.change_one(c, "enqueue", params, "state")
                if view is None:
                    found = await store.read(c, "live_duplicate", params)
                    view = found[0] if found else None
                if view is not None:
                    return view.id
        raise RuntimeError("could not enqueue or find a duplicate job")  # pragma: no cover

    async def queued_by_kind(self) -> dict[str, int]:
        """How many jobs of each kind wait to be claimed (for the queue-depth gauge)."""
        async with self._database.connection() as conn:
            cur = await conn.execute(query("queued_by_kind"))
            return {str(row["kind"]): int(row["queued"]) for row in await cur.fetchall()}

    async def get(self, tenant_id: str, job_id: str) -> JobView:
        """The job; ``NotFound`` when it does not exist or belongs to another tenant."""
        key = _job_uuid(job_id)
        async with self._database.connection() as conn:
            found = await store.read(conn, "get", {"id": key, "tenant_id": tenant_id})
        if not found:
            raise NotFound(f"No job with id {job_id!r}.", param="job_id", code="job_not_found")
        return found[0]

    async def list_for_collection(
        self, tenant_id: str, collection_id: str, *, limit: int = 100
    ) -> list[JobView]:
        """The collection's most recent jobs, newest first."""
        async with self._database.connection() as conn:
            return await store.read(
                conn,
                "list_for_collection",
                {"tenant_id": tenant_id, "collection_id": collection_id, "limit": limit},
            )

    async def cancel(self, tenant_id: str, job_id: str) -> JobView:
        """Cancel a job: at once when queued; a running one is stopped by its worker, which
        this waits for (up to ``jobs.cancel_wait_s``). A finished job is returned unchanged."""
        key = _job_uuid(job_id)
        with self._hub.subscribe(job_topic(job_id)) as events:
            async with self._database.connection() as conn:
                found = await store.read(
                    conn, "request_cancel", {"id": key, "tenant_id": tenant_id}
                )
                view = found[0] if found else None
                if view is not None:  # queued -> cancelled at once; running -> flagged
                    await store.publish(
                        conn, "state" if view.terminal else "cancel_requested", view
                    )
            if view is None or view.terminal:
                return await self.get(tenant_id, job_id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._cancel_wait_s):
                    async for event in events:
                        if isinstance(event, dict) and event.get("state") in TERMINAL_STATES:
                            break
        return await self.get(tenant_id, job_id)

    async def wait(self, tenant_id: str, job_id: str, timeout: float) -> JobView:
        """The job once it has finished, or as it is after ``timeout`` seconds."""
        with self._hub.subscribe(job_topic(job_id)) as events:
            view = await self.get(tenant_id, job_id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    while not view.terminal:
                        await events.get()
                        view = await self.get(tenant_id, job_id)
        return view

    @asynccontextmanager
    async def _connection(
        self, conn: AsyncConnection[Any] | None
    ) -> AsyncIterator[AsyncConnection[Any]]:
        if conn is not None:
            yield conn
        else:
            async with self._database.connection() as own:
                yield own


def _job_uuid(job_id: str) -> uuid.UUID:
    try:
        return uuid.UUID(job_id)
    except ValueError:
        raise NotFound(
            f"No job with id {job_id!r}.", param="job_id", code="job_not_found"
        ) from None


def job_topic(job_id: str) -> str:
    """The event topic of a job (ids normalised, so any spelling of the id subscribes)."""
    return f"job:{_job_uuid(job_id)}"
