"""The semantic cache's write-behind queue: rows leave it only once written, wait through a
database outage, and are written at close."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from propylon.gateway.cache.key import cache_key
from propylon.gateway.cache.semantic import Embedding
from propylon.gateway.cache.stats import CacheStats
from propylon.gateway.cache.writes import PendingEntry, WriteBehind


class Store:
    """A writer that fails while ``down`` and records the batches it took."""

    def __init__(self) -> None:
        self.down = False
        self.batches: list[tuple[list[dict[str, Any]], list[dict[str, Any]]]] = []

    async def write(self, entries: list[dict[str, Any]], lookups: list[dict[str, Any]]) -> None:
        if self.down:
            raise ConnectionError("database unavailable")
        self.batches.append((entries, lookups))


def entry(question: str) -> PendingEntry:
    body = {"model": "m", "messages": [{"role": "user", "content": question}]}
    key = cache_key(body, tenant_id="t", model="m")
    return PendingEntry(key, question, Embedding.of([1.0, 0.0]), {"question": question})


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # noqa: ASYNC110 - the queue offers no event to wait on
            await asyncio.sleep(0.005)


async def test_rows_queued_together_are_written_in_one_batch_soon_after() -> None:
    store = Store()
    writes = WriteBehind(store.write, delay_s=0.01)
    writes.add_entry(entry("a"))
    writes.add_lookup({"outcome": "miss"})
    writes.add_entry(entry("b"))
    assert [e.question for e in writes.pending_entries()] == ["a", "b"]

    await wait_until(lambda: writes.pending == 0)
    assert store.batches == [
        ([{"question": "a"}, {"question": "b"}], [{"outcome": "miss"}]),
    ]
    assert writes.writes == 1
    await writes.close()


async def test_an_outage_keeps_the_rows_queued_and_searchable_until_written() -> None:
    store = Store()
    store.down = True
    stats = CacheStats()
    writes = WriteBehind(store.write, delay_s=0.01, stats=stats)
    writes.add_entry(entry("kept"))
    await wait_until(lambda: writes.failed_writes >= 2)
    assert stats.errors["database"] == writes.failed_writes  # GET /admin/cache/stats
    assert [e.question for e in writes.pending_entries()] == ["kept"]

    store.down = False
    await wait_until(lambda: writes.pending == 0)
    assert store.batches == [([{"question": "kept"}], [])]
    await writes.close()


async def test_a_full_queue_drops_the_oldest_rows_and_counts_them() -> None:
    store = Store()
    store.down = True
    stats = CacheStats()
    unqueued: list[str] = []
    writes = WriteBehind(
        store.write,
        delay_s=10.0,
        capacity=2,
        stats=stats,
        unqueued=lambda e: unqueued.append(e.question),
    )
    for question in ("one", "two", "three"):
        writes.add_entry(entry(question))
    assert [e.question for e in writes.pending_entries()] == ["two", "three"]
    assert writes.dropped == stats.dropped == 1
    assert unqueued == ["one"], "told, so the entry leaves the first-stage index too"
    store.down = False
    await writes.close()
    assert store.batches == [([{"question": "two"}, {"question": "three"}], [])]


async def test_close_writes_what_is_pending_and_reports_what_it_could_not() -> None:
    store = Store()
    writes = WriteBehind(store.write, delay_s=60.0)
    writes.add_lookup({"outcome": "hit"})
    await writes.close()
    assert store.batches == [([], [{"outcome": "hit"}])]

    store.down = True
    lost = WriteBehind(store.write, delay_s=60.0)
    lost.add_lookup({"outcome": "miss"})
    await lost.close(timeout=1.0)  # logs the loss, does not raise
    assert lost.pending == 1


class Refused(Exception):
    """What psycopg raises for a row PostgreSQL refuses: an error with a SQLSTATE."""

    sqlstate = "22P05"  # untranslatable character (a \u0000 in jsonb)


async def test_a_row_the_database_refuses_is_dropped_and_the_others_written(
    caplog: pytest.LogCaptureFixture,
) -> None:
    written: list[str] = []

    async def write(entries: list[dict[str, Any]], lookups: list[dict[str, Any]]) -> None:
        if any(e["question"] == "bad" for e in entries):
            raise Refused("unsupported Unicode escape sequence")
        written.extend(e["question"] for e in entries)

    stats = CacheStats()
    unqueued: list[str] = []
    writes = WriteBehind(
        write, delay_s=60.0, stats=stats, unqueued=lambda e: unqueued.append(e.question)
    )
    for question in ("good", "bad", "also good"):
        writes.add_entry(entry(question))
    await writes.flush()
    assert written == ["good", "also good"]
    assert unqueued == ["bad"]
    (line,) = [r for r in caplog.records if "refused by the database" in r.getMessage()]
    fields = line.__dict__
    assert (fields["row"], fields["tenant_id"], fields["model"]) == ("entry", "t", "m")
    assert "bad" not in repr(fields), "named by tenant and model, never its question"
    assert (writes.pending, writes.refused, stats.errors["database"]) == (0, 1, 1)
    await writes.close()


async def test_an_unavailable_database_is_not_mistaken_for_a_bad_row() -> None:
    store = Store()
    store.down = True
    writes = WriteBehind(store.write, delay_s=60.0)
    writes.add_entry(entry("a"))
    writes.add_entry(entry("b"))
    with pytest.raises(ConnectionError):
        await writes.flush()
    assert (writes.pending, writes.refused) == (2, 0)
    store.down = False
    await writes.close()


async def test_rows_dropped_by_a_full_queue_during_a_write_do_not_shift_the_queue() -> None:
    release = asyncio.Event()
    written: list[str] = []

    async def slow(entries: list[dict[str, Any]], lookups: list[dict[str, Any]]) -> None:
        await release.wait()
        written.extend(e["question"] for e in entries)

    writes = WriteBehind(slow, delay_s=60.0, capacity=2)
    writes.add_entry(entry("one"))
    writes.add_entry(entry("two"))
    flushing = asyncio.create_task(writes.flush())
    await asyncio.sleep(0)
    writes.add_entry(entry("three"))  # full: "one" is dropped while the write is under way
    release.set()
    await flushing
    assert written == ["one", "two"]
    assert [e.question for e in writes.pending_entries()] == ["three"]
    await writes.close()
