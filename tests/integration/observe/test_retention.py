"""Rows older than the retention period are deleted; newer ones stay."""

from __future__ import annotations

import time

from propylon.db.database import Database
from propylon.observe.record import RequestRecord
from propylon.observe.request_log import RequestLog

DAY = 86400.0


def record(request_id: str, age_days: float) -> RequestRecord:
    return RequestRecord(
        request_id=request_id,
        created_at=time.time() - age_days * DAY,
        endpoint="chat",
        status=200,
        latency_ms=1.0,
    )


async def test_rows_past_retention_are_deleted(migrated_database: Database) -> None:
    log = RequestLog(migrated_database, retention_days=30)
    for request_id, age in (("old-1", 45), ("old-2", 31), ("recent", 29), ("now", 0)):
        log.submit(record(request_id, age))
    assert await log.flush() == 4

    assert await log.delete_expired() == 2
    async with migrated_database.connection() as conn:
        cur = await conn.execute("SELECT request_id FROM request_log ORDER BY id")
        kept = [row["request_id"] for row in await cur.fetchall()]
    assert kept == ["recent", "now"]


async def test_zero_retention_keeps_everything(migrated_database: Database) -> None:
    log = RequestLog(migrated_database, retention_days=0)
    log.submit(record("ancient", 3650))
    await log.flush()
    assert await log.delete_expired() == 0
