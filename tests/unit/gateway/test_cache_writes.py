"""The semantic cache's write-behind queue: rows leave it only once written, wait through a
database outage, and are written at close."""

from __future__ import annotations

import asyncio
from typing import Any

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
    writes = WriteBehind(store.write, delay_s=10.0, capacity=2, stats=stats)
    for question in ("one", "two", "three"):
        writes.add_entry(entry(question))
    assert [e.question for e in writes.pending_entries()] == ["two", "three"]
    assert writes.dropped == stats.dropped == 1
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
