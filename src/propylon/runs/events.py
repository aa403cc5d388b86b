"""The ordered event log of a run: appended by the executor, replayed from any event id, and
pushed to live followers through the process's one LISTEN connection (``ProgressHub``).

The log lives in PostgreSQL, so a reader that reconnects (to this or another gateway process,
before or after a restart) with the last id it saw gets exactly the events after it. Each
append sends ``NOTIFY propylon_jobs`` in the same transaction, carrying the event itself when
it is small: a follower that has every earlier event yields it without a query, and reads the
log only to catch up (on start, after a gap, or when an event was too big for a
notification). A follower that hears nothing for ``idle_s`` checks the run's state, for a run
whose worker died without writing its last event.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from propylon.db.database import Database
from propylon.db.named_queries import named_queries
from propylon.jobs.progress import GAP, ProgressHub, run_topic
from propylon.storable import escape_unstorable, storable_json

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
_LAST_EVENTS = frozenset(f"run_{state}" for state in TERMINAL)
_MAX_NOTIFY_BYTES = 7000  # PostgreSQL refuses payloads of 8000 bytes and more
_PAGE = 500


Conn = AsyncConnection[DictRow]


def _q(name: str) -> Any:
    return named_queries("propylon.runs")[name]


class RunEventLog:
    """Appends one run's events with consecutive ids. One writer at a time: the job running
    the run, or what resumes it (an approval), in the transaction that queues its next job,
    so the job's first event follows it (``append(..., conn=)``)."""

    def __init__(self, database: Database, run_id: str) -> None:
        self._database = database
        self._run_id = run_id
        self._seq: int | None = None

    async def append(self, kind: str, data: dict[str, Any], *, conn: Conn | None = None) -> int:
        """Append an event, on ``conn`` (inside the caller's transaction) when given."""
        if conn is not None:
            return await self._append(conn, kind, data)
        async with self._database.connection() as own:
            return await self._append(own, kind, data)

    async def append_output(self, step: str, piece: str, *, first: bool) -> int:
        """A ``token`` event, and ``piece`` appended to the run's partial output (which
        ``first`` restarts: a step's retry streams its answer again), in one transaction."""
        piece = escape_unstorable(piece)
        async with self._database.connection() as conn:
            await conn.execute(
                _q("append_output"), {"run_id": self._run_id, "piece": piece, "first": first}
            )
            return await self._append(conn, "token", {"step": step, "text": piece})

    async def _append(self, conn: Conn, kind: str, data: dict[str, Any]) -> int:
        if self._seq is None:  # a retried job continues the log after what is there
            cur = await conn.execute(_q("next_seq"), {"run_id": self._run_id})
            row = await cur.fetchone()
            self._seq = int(row["seq"]) if row else 0
        seq = self._seq + 1
        data = storable_json(data)  # stored and notified alike: a NUL shown as \u0000
        await conn.execute(
            _q("append_event"),
            {"run_id": self._run_id, "seq": seq, "type": kind, "data": Jsonb(data)},
        )
        event = {"run_id": self._run_id, "seq": seq, "event": {"type": kind, "data": data}}
        payload = orjson.dumps(event)
        if len(payload) > _MAX_NOTIFY_BYTES:
            payload = orjson.dumps({"run_id": self._run_id, "seq": seq})
        await conn.execute(_q("notify"), {"payload": payload.decode()})
        self._seq = seq
        return seq


async def follow(
    database: Database,
    hub: ProgressHub,
    run_id: str,
    after: int,
    run_state: Callable[[], Awaitable[str]],
    *,
    idle_s: float = 2.0,
) -> AsyncIterator[dict[str, Any]]:
    """Events with ids above ``after``, in order, until the run has ended and all are sent.

    ``run_state`` is an async callable returning the run's current state.
    """
    with hub.subscribe(run_topic(run_id)) as feed:  # before reading: nothing falls between
        while True:
            caught_up = True
            async for event in _read(database, run_id, after):
                after = event["id"]
                yield event
                if event["type"] in _LAST_EVENTS:
                    return
            while caught_up:
                try:
                    item = await asyncio.wait_for(feed.get(), idle_s)
                except TimeoutError:
                    if await run_state() in TERMINAL:
                        async for event in _read(database, run_id, after):
                            yield event  # written just before the state changed
                        return
                    continue
                if item is GAP or not isinstance(item, dict):
                    caught_up = False
                    continue
                seq = int(item.get("seq", 0))
                if seq <= after:
                    continue  # already read from the log
                notified = item.get("event")
                if seq != after + 1 or not isinstance(notified, dict):
                    caught_up = False  # missed one, or it was too big to carry: read the log
                    continue
                after = seq
                yield {"id": seq, "type": notified["type"], "data": notified["data"]}
                if notified["type"] in _LAST_EVENTS:
                    return


async def _read(database: Database, run_id: str, after: int) -> AsyncIterator[dict[str, Any]]:
    while True:
        async with database.connection() as conn:
            cur = await conn.execute(
                _q("events_after"), {"run_id": run_id, "after": after, "limit": _PAGE}
            )
            rows = await cur.fetchall()
        for row in rows:
            after = int(row["seq"])
            yield {"id": after, "type": row["type"], "data": row["data"]}
        if len(rows) < _PAGE:
            return
