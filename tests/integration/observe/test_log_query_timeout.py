"""A `GET /v1/logs` query that runs too long is stopped with a clear error, never left to run
(at 10 million rows a filter combination the planner misjudges walked the log for 27 s)."""

from __future__ import annotations

from datetime import UTC, datetime

import psycopg
import pytest

from propylon.db.database import Database
from propylon.errors import InvalidRequest
from propylon.observe.logs_query import LogFilter, list_logs
from propylon.principal import Principal

READER = Principal(tenant_id="slow", tenant_name="slow", key_id="k")


async def test_a_query_past_its_timeout_is_stopped_with_a_clear_error(
    database: Database, database_url: str
) -> None:
    filter = LogFilter.from_params([("model", "gpt-4o")], now=datetime.now(UTC))
    # The query waits on a lock another session holds: it runs past any timeout for sure.
    async with await psycopg.AsyncConnection.connect(database_url) as holder:
        await holder.execute("LOCK TABLE request_log IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(InvalidRequest) as refused:
            await list_logs(database, READER, filter, timeout_s=0.2)
        await holder.rollback()
    assert refused.value.code == "search_too_broad" and refused.value.param == "since"
    assert "narrow the time window" in refused.value.message
    # The connection went back to the pool usable, and without the timeout it answers.
    page = await list_logs(database, READER, filter, timeout_s=5.0)
    assert page["data"] == []
