"""Reads and writes of the ``jobs`` table. Every write publishes its event in the same
transaction (``NOTIFY`` is delivered at commit), so followers never see a change before it is
visible, nor miss one that is."""

from __future__ import annotations

from typing import Any

from psycopg import AsyncConnection

from propylon.jobs.events import EventType, encode, job_event
from propylon.jobs.queries import query
from propylon.jobs.view import JobView

Conn = AsyncConnection[Any]


async def read(conn: Conn, name: str, params: dict[str, Any]) -> list[JobView]:
    cur = await conn.execute(query(name), params)
    return [JobView.from_row(row) for row in await cur.fetchall()]


async def change(conn: Conn, name: str, params: dict[str, Any], event: EventType) -> list[JobView]:
    """Run the named write and publish ``event`` for every job it changed."""
    views = await read(conn, name, params)
    for view in views:
        await publish(conn, event, view)
    return views


async def publish(conn: Conn, event: EventType, view: JobView) -> None:
    """Send ``event`` about ``view`` when ``conn``'s transaction commits."""
    await conn.execute(query("notify"), {"payload": encode(job_event(event, view))})


async def change_one(
    conn: Conn, name: str, params: dict[str, Any], event: EventType
) -> JobView | None:
    views = await change(conn, name, params, event)
    return views[0] if views else None
