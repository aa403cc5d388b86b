"""The request log's writer batches steady traffic: one COPY per interval, not per request."""

from __future__ import annotations

import asyncio
import time

from propylon.db.database import Database
from propylon.observe.request_log import RequestLog
from tests.integration.observe.support import record


async def test_steady_traffic_is_written_once_per_interval(database: Database) -> None:
    """Records arrive every 2 ms for 1.5 s while the writer flushes every 0.5 s. Each write
    takes what was pending when it began; before, it went on writing whatever arrived during
    its own COPY, and sequential traffic cost a COPY every few requests (hundreds here)."""
    log = RequestLog(database, flush_interval_s=0.5)
    await log.start()
    submitted = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        log.submit(record(f"steady-{submitted}"))
        submitted += 1
        await asyncio.sleep(0.002)
    await log.stop()
    async with database.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM request_log")  # a new database
        stored = (await cur.fetchone() or {"n": 0})["n"]
    assert submitted > 200
    assert stored == submitted and log.written == submitted  # nothing lost at stop
    assert log.writes <= 6  # one per interval (3-4) and the final one at stop


async def test_a_flush_writes_what_was_pending_when_it_began(
    database: Database,
) -> None:
    log = RequestLog(database, batch_size=2)
    for n in range(5):
        log.submit(record(f"pending-{n}"))
    flushing = asyncio.create_task(log.flush())
    await asyncio.sleep(0)  # the flush has begun: it counted 5
    log.submit(record("pending-late"))
    assert await flushing == 5  # in three COPYs of at most 2
    assert (log.pending, log.writes) == (1, 3)
    assert await log.flush() == 1
