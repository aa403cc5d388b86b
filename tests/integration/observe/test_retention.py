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


async def test_rows_past_retention_are_deleted(database: Database) -> None:
    log = RequestLog(database, retention_days=30)
    for request_id, age in (("old-1", 45), ("old-2", 31), ("recent", 29), ("now", 0)):
        log.submit(record(request_id, age))
    assert await log.flush() == 4

    assert await log.delete_expired() == 2
    async with database.connection() as conn:
        cur = await conn.execute("SELECT request_id FROM request_log ORDER BY id")
        kept = [row["request_id"] for row in await cur.fetchall()]
    assert kept == ["recent", "now"]


async def test_zero_retention_keeps_everything(database: Database) -> None:
    log = RequestLog(database, retention_days=0)
    log.submit(record("ancient", 3650))
    await log.flush()
    assert await log.delete_expired() == 0


async def test_a_tenant_keeps_its_own_retention_and_feedback_goes_with_its_rows(
    database: Database,
) -> None:
    log = RequestLog(database, retention_days=30, tenant_retention_days={"short": 7, "forever": 0})
    rows = [
        ("short-old", "short", 10),
        ("short-new", "short", 3),
        ("forever-old", "forever", 400),
        ("default-old", "other", 40),
        ("default-mid", "other", 10),
    ]
    for request_id, tenant, age in rows:
        old = record(request_id, age)
        old.tenant_id = tenant
        log.submit(old)
    await log.flush()
    async with database.connection() as conn:
        for request_id, tenant, age in rows:
            await conn.execute(
                "INSERT INTO feedback (tenant_id, request_id, score, kind, created_at)"
                " VALUES (%s, %s, 1, 'thumbs', now() - make_interval(days => %s))",
                (tenant, request_id, age),
            )

    assert await log.delete_expired() == 2
    async with database.connection() as conn:
        cur = await conn.execute("SELECT request_id FROM request_log ORDER BY id")
        kept = [row["request_id"] for row in await cur.fetchall()]
        cur = await conn.execute("SELECT request_id FROM feedback ORDER BY id")
        feedback = [row["request_id"] for row in await cur.fetchall()]
    assert kept == ["short-new", "forever-old", "default-mid"]
    assert feedback == kept
