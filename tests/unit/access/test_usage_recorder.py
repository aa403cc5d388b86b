"""Spend is counted per request in memory and written in batches, never on the request path."""

from __future__ import annotations

import datetime as dt
from typing import cast

import psycopg
import pytest

from propylon.access.budgets import Budget
from propylon.access.keys import KeyRecord
from propylon.access.limits import Limits
from propylon.access.store import AccessStore, UsageRow
from propylon.access.usage import UsageRecorder

DAY = dt.date(2026, 11, 27)


def record(key: str, tenant: str) -> KeyRecord:
    return KeyRecord(
        id=key,
        tenant_id=tenant,
        tenant_name=tenant,
        name=key,
        prefix="ppl_x",
        key_hash=b"",
        models=None,
        features=frozenset({"chat"}),
        limits=Limits(),
        budget=Budget(),
        tenant_limits=Limits(),
        tenant_budget=Budget(),
    )


class FakeStore:
    def __init__(self) -> None:
        self.batches: list[list[UsageRow]] = []
        self.down = False

    async def record_usage_rows(self, rows: list[UsageRow]) -> None:
        if self.down:
            raise psycopg.OperationalError("database is down")
        self.batches.append(rows)


def recorder(store: FakeStore) -> UsageRecorder:
    return UsageRecorder(cast(AccessStore, store), today=lambda: DAY)


async def test_many_requests_become_one_row_per_key_and_day() -> None:
    store = FakeStore()
    usage = recorder(store)
    a, b = record("key-a", "t1"), record("key-b", "t1")
    for _ in range(100):
        usage.add(a, 10, 5, 0.001)
    usage.add(b, 1, 1, 0.0)
    await usage.flush()
    assert len(store.batches) == 1
    rows = {row.key_id: row for row in store.batches[0]}
    assert rows["key-a"].requests == 100
    assert rows["key-a"].prompt_tokens == 1000
    assert rows["key-a"].cost_usd == pytest.approx(0.1)
    assert [row.key_id for row in store.batches[0]] == ["key-a", "key-b"], "fixed key order"


async def test_unwritten_spend_counts_toward_budgets() -> None:
    usage = recorder(FakeStore())
    a, b, other = record("key-a", "t1"), record("key-b", "t1"), record("key-c", "t2")
    usage.add(a, 10, 5, 0.5)
    usage.add(b, 1, 1, 0.25)
    usage.add(other, 100, 100, 9.0)
    assert usage.pending(a) == (15, 0.5, 17, 0.75)
    assert usage.pending(other)[0] == 200


async def test_a_failed_write_keeps_the_tally_for_the_next_flush() -> None:
    store = FakeStore()
    usage = recorder(store)
    a = record("key-a", "t1")
    usage.add(a, 10, 5, 0.5)
    store.down = True
    with pytest.raises(psycopg.OperationalError):
        await usage.flush()
    usage.add(a, 1, 1, 0.0)
    assert usage.pending(a)[0] == 17, "nothing lost while the database is down"
    store.down = False
    await usage.flush()
    (row,) = store.batches[0]
    assert (row.requests, row.prompt_tokens, row.completion_tokens) == (2, 11, 6)
    assert usage.pending(a) == (0, 0.0, 0, 0.0)


async def test_closing_writes_what_is_left() -> None:
    store = FakeStore()
    usage = recorder(store)
    await usage.start()
    usage.add(record("key-a", "t1"), 3, 4, 0.0)
    await usage.close()
    assert store.batches[0][0].prompt_tokens == 3


class Refused(Exception):
    """What psycopg raises for a row PostgreSQL refuses for its data."""

    sqlstate = "22003"  # numeric value out of range


async def test_a_refused_usage_row_is_logged_by_its_key_and_the_others_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Picky(FakeStore):
        async def record_usage_rows(self, rows: list[UsageRow]) -> None:
            if any(row.key_id == "key-bad" for row in rows):
                raise Refused("value out of range: 1e400")
            await super().record_usage_rows(rows)

    store = Picky()
    usage = recorder(store)
    usage.add(record("key-bad", "t1"), 1, 1, 0.0)
    usage.add(record("key-good", "t1"), 1, 1, 0.0)
    await usage.flush()
    assert [row.key_id for batch in store.batches for row in batch] == ["key-good"]
    (line,) = [r for r in caplog.records if "refused by the database" in r.getMessage()]
    fields = line.__dict__
    assert (fields["key_id"], fields["tenant_id"], fields["day"]) == ("key-bad", "t1", "2026-11-27")
    assert fields["error"] == "Refused (SQLSTATE 22003)" and "1e400" not in repr(fields)
