"""The request log's buffer: bounded, counted, and kept while writes fail."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from propylon.db.database import Database
from propylon.observe.record import RequestRecord
from propylon.observe.request_log import RequestLog


class DownDatabase(Database):
    """A database whose every connection attempt fails, as when the server is stopped."""

    def __init__(self) -> None:
        self.attempts = 0

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[Any]:
        self.attempts += 1
        raise ConnectionError("database is down")
        yield


def record(n: int) -> RequestRecord:
    return RequestRecord(
        request_id=f"r{n}", created_at=0.0, endpoint="chat", status=200, latency_ms=1.0
    )


def test_records_past_the_bound_are_dropped_and_counted() -> None:
    log = RequestLog(DownDatabase(), buffer_size=3)
    for n in range(5):
        log.submit(record(n))
    assert (log.pending, log.dropped) == (3, 2)


async def test_a_failed_write_keeps_the_records_for_the_next_try() -> None:
    database = DownDatabase()
    log = RequestLog(database, buffer_size=10, batch_size=2)
    for n in range(3):
        log.submit(record(n))
    with pytest.raises(ConnectionError):
        await log.flush()
    assert database.attempts == 1
    assert log.pending == 3 and log.dropped == 0


async def test_stopping_with_the_database_down_gives_up_without_raising() -> None:
    log = RequestLog(DownDatabase(), buffer_size=10, flush_interval_s=60)
    await log.start()
    log.submit(record(1))
    await log.stop(timeout=0.5)
    assert log.pending == 1
