"""The ordered event log of a run: appended by the executor, replayed from any event id.

The log lives in PostgreSQL, so a reader that reconnects (to this or another gateway process,
before or after a restart) with the last id it saw gets exactly the events after it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from psycopg.types.json import Jsonb

from propylon.db.database import Database
from propylon.db.named_queries import named_queries

TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


def _q(name: str) -> Any:
    return named_queries("propylon.runs")[name]


class RunEventLog:
    """Appends one run's events with consecutive ids (one writer: the job running it)."""

    def __init__(self, database: Database, run_id: str) -> None:
        self._database = database
        self._run_id = run_id
        self._seq: int | None = None

    async def append(self, kind: str, data: dict[str, Any]) -> int:
        async with self._database.connection() as conn:
            if self._seq is None:  # a retried job continues the log after what is there
                cur = await conn.execute(_q("next_seq"), {"run_id": self._run_id})
                row = await cur.fetchone()
                self._seq = int(row["seq"]) if row else 0
            self._seq += 1
            await conn.execute(
                _q("append_event"),
                {"run_id": self._run_id, "seq": self._seq, "type": kind, "data": Jsonb(data)},
            )
        return self._seq


async def follow(
    database: Database,
    run_id: str,
    after: int,
    run_state: Any,
    *,
    poll_s: float = 0.05,
) -> AsyncIterator[dict[str, Any]]:
    """Events with ids above ``after``, in order, until the run has ended and all are sent.

    ``run_state`` is an async callable returning the run's current state; polling the log is
    what makes resumption exact (no event lives only in memory).
    """
    ended = False
    while True:
        async with database.connection() as conn:
            cur = await conn.execute(
                _q("events_after"), {"run_id": run_id, "after": after, "limit": 500}
            )
            rows = await cur.fetchall()
        for row in rows:
            after = int(row["seq"])
            yield {"id": after, "type": row["type"], "data": row["data"]}
        if rows:
            continue
        if ended:
            return
        # Ended: read once more, for events written just before the state changed.
        ended = await run_state() in TERMINAL
        if not ended:
            await asyncio.sleep(poll_s)
