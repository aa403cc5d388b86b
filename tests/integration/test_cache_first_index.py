"""The first stage's in-memory index (``first_index.py``) on a real PostgreSQL + pgvector: a
miss reads no database, an entry of another replica is found within the refresh interval,
an entry deleted elsewhere is dropped when its row is found gone, and a failed refresh is the
caller's miss, never a stuck index."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from propylon.db.database import Database
from propylon.gateway.cache.database_index import RETRY_S, DatabaseIndex
from propylon.gateway.cache.first_index import FirstIndex
from propylon.gateway.cache.first_stage import FirstStage
from propylon.gateway.cache.queries import queries
from propylon.gateway.cache.semantic import SemanticCache
from propylon.local.static import StaticEmbedder
from tests.integration.test_cache_first_stage import CountingLetters, lookup, store

QUESTION = "How do I reverse a list in Python?"
NEAR = "How do I reverse a list in Python??"


class Counted:
    """The database, counting the connections taken; fails while ``down``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.taken = 0
        self.down = False

    def _take(self, opened: AbstractAsyncContextManager[Any]) -> AbstractAsyncContextManager[Any]:
        self.taken += 1
        if self.down:
            raise ConnectionError("database unavailable")
        return opened

    def connection(self, timeout: float | None = None) -> AbstractAsyncContextManager[Any]:
        return self._take(self.db.connection(timeout))

    def autocommit(self, timeout: float | None = None) -> AbstractAsyncContextManager[Any]:
        return self._take(self.db.autocommit(timeout))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


Replica = tuple[SemanticCache, Counted, Clock]


@pytest.fixture
async def replicas(database: Database, static: StaticEmbedder) -> AsyncIterator[Any]:
    made: list[SemanticCache] = []

    def make(**index: Any) -> Replica:
        counted, clock = Counted(database), Clock()
        first = FirstStage(static, "static-test", threshold=0.6)
        cache = SemanticCache(counted, CountingLetters(), embedder_id="letters", first_stage=first)
        cache.index = FirstIndex(
            counted, embedder="letters", first_model="static-test", monotonic=clock, **index
        )
        made.append(cache)
        return cache, counted, clock

    yield make
    for cache in made:
        await cache.aclose()
    async with database.connection() as conn:
        await conn.execute("DELETE FROM cache_entries WHERE embedder = 'letters'")


async def loaded(semantic: SemanticCache) -> None:
    assert semantic.index is not None
    assert await semantic.index.loaded()


async def test_until_the_index_is_loaded_the_database_searches(replicas: Any) -> None:
    semantic, _, _ = replicas()
    await store(semantic, QUESTION, "index-loading")
    await semantic.writes.flush()
    found = await lookup(semantic, NEAR, "index-loading")  # starts loading in the background
    assert found.hit is not None and found.hit.entry_id is not None
    await loaded(semantic)
    assert semantic.index is not None and semantic.index.entries >= 1


async def test_a_miss_reads_no_database_once_the_index_is_loaded(replicas: Any) -> None:
    semantic, counted, _ = replicas()
    await store(semantic, QUESTION, "index-miss")
    await semantic.writes.flush()
    await loaded(semantic)

    counted.taken = 0
    missed = await lookup(semantic, "Which vitamins are in spinach leaves?", "index-miss")
    assert missed.hit is None and missed.reason == "first-stage"
    assert counted.taken == 0, "a miss compared in memory"
    found = await lookup(semantic, NEAR, "index-miss")
    assert found.hit is not None and found.hit.entry_id is not None
    assert counted.taken == 2, "a near candidate: its row read by id, its embedder vector kept"
    counted.taken = 0
    again = await lookup(semantic, NEAR, "index-miss")
    assert again.hit is not None and counted.taken == 1, "then only its row read"


async def test_an_entry_of_another_replica_is_found_within_the_refresh_interval(
    replicas: Any,
) -> None:
    writer, _, _ = replicas()
    reader, _, clock = replicas(refresh_s=1.0)
    await loaded(reader)
    assert (await lookup(reader, NEAR, "index-replicas")).hit is None

    await store(writer, QUESTION, "index-replicas")
    await writer.writes.flush()
    clock.now += 0.5
    stale = await lookup(reader, NEAR, "index-replicas")
    assert stale.hit is None, "within the refresh interval the reader may not know it yet"
    clock.now += 0.5
    fresh = await lookup(reader, NEAR, "index-replicas")
    assert fresh.hit is not None and fresh.hit.entry_id is not None


async def test_an_entry_of_this_replica_is_found_as_soon_as_it_is_written(
    replicas: Any,
) -> None:
    semantic, counted, _ = replicas(refresh_s=3600.0)
    await loaded(semantic)
    assert (await lookup(semantic, NEAR, "index-own")).hit is None
    await store(semantic, QUESTION, "index-own")
    assert semantic.index is not None and semantic.index.entries == 1, "indexed while queued"
    taken = counted.taken
    queued = await lookup(semantic, NEAR, "index-own")
    assert queued.hit is not None and queued.hit.entry_id is None, "served from the queue"
    assert counted.taken == taken, "no database read for a queued entry"
    await semantic.writes.flush()
    written = await lookup(semantic, NEAR, "index-own")
    assert written.hit is not None and written.hit.entry_id is not None, "then by its row"
    assert semantic.index.entries == 1


async def test_entries_written_in_one_batch_keep_each_its_own_id(
    replicas: Any, database: Database
) -> None:
    """Entries written in one batch: each queued entry is renamed to its own row's id, so a hit
    reads its own answer, never a neighbour's."""
    semantic, _, _ = replicas(refresh_s=3600.0)
    await loaded(semantic)
    questions = [
        "How do I reverse a list in Python?",
        "What is the capital of Peru?",
        "Which vitamins are in spinach leaves?",
        "How tall is the Eiffel tower?",
        "When did the Berlin wall fall?",
    ]
    for question in questions:
        await store(semantic, question, "index-batch")
    assert semantic.writes.pending == len(questions)
    await semantic.writes.flush()
    async with database.connection() as conn:
        cursor = await conn.execute(
            "SELECT id, question FROM cache_entries WHERE tenant_id = 'index-batch'"
        )
        rows = {r["question"]: int(r["id"]) for r in await cursor.fetchall()}
    assert sorted(rows) == sorted(questions)
    for question in questions:
        found = await lookup(semantic, question, "index-batch")
        assert found.hit is not None and found.hit.entry_id == rows[question]
        assert found.hit.response["choices"][0]["message"]["content"] == f"answer to {question}"


async def test_an_entry_queued_before_the_index_is_loaded_is_found_in_the_queue(
    replicas: Any,
) -> None:
    semantic, _, _ = replicas(refresh_s=3600.0)
    await store(semantic, QUESTION, "index-early")  # the index has not read the table yet
    await loaded(semantic)
    assert semantic.index is not None and semantic.index.entries == 0
    queued = await lookup(semantic, NEAR, "index-early")
    assert queued.hit is not None and queued.hit.entry_id is None
    await semantic.writes.flush()
    assert semantic.index.entries == 1


async def test_an_entry_deleted_elsewhere_is_dropped_when_its_row_is_gone(
    replicas: Any,
    database: Database,
) -> None:
    semantic, _, _ = replicas()
    await store(semantic, QUESTION, "index-deleted")
    await semantic.writes.flush()
    await loaded(semantic)
    assert (await lookup(semantic, NEAR, "index-deleted")).hit is not None
    assert semantic.index is not None and semantic.index.entries == 1

    async with database.connection() as conn:  # another replica's purge
        await conn.execute("DELETE FROM cache_entries WHERE tenant_id = 'index-deleted'")
    gone = await lookup(semantic, NEAR, "index-deleted")
    assert gone.hit is None and gone.reason == "first-stage"
    assert semantic.index.entries == 0


async def test_a_failed_refresh_is_the_callers_miss_and_the_next_lookup_recovers(
    replicas: Any,
) -> None:
    semantic, counted, clock = replicas(refresh_s=1.0)
    await loaded(semantic)
    await store(semantic, QUESTION, "index-down")
    await semantic.writes.flush()
    counted.down = True
    clock.now += 1.0  # a refresh is due
    with pytest.raises(ConnectionError):  # CachedChatService serves it as a miss
        await lookup(semantic, NEAR, "index-down")
    counted.down = False
    found = await lookup(semantic, NEAR, "index-down")
    assert found.hit is not None and found.hit.entry_id is not None


async def test_a_failed_first_read_leaves_the_search_to_the_database_and_is_tried_again(
    replicas: Any,
) -> None:
    semantic, counted, clock = replicas(refresh_s=1.0)
    assert semantic.index is not None
    counted.down = True
    assert not await semantic.index.loaded()
    counted.down = False
    await store(semantic, QUESTION, "index-first-read")
    await semantic.writes.flush()
    found = await lookup(semantic, NEAR, "index-first-read")  # the database searched
    assert found.hit is not None and not semantic.index.usable
    clock.now += 1.0
    await loaded(semantic)
    assert semantic.index.entries >= 1


async def test_past_its_size_the_index_gives_way_to_the_database_search(
    replicas: Any, database: Database
) -> None:
    semantic, counted, _ = replicas(max_entries=1)
    for question in (QUESTION, "What is the capital of Peru?"):
        await store(semantic, question, "index-full")
    await semantic.writes.flush()
    assert semantic.index is not None
    await semantic.index.loaded()
    found = await lookup(semantic, NEAR, "index-full")
    assert found.hit is not None and found.hit.entry_id is not None
    assert semantic.index is not None and not semantic.index.usable
    assert await semantic.database_index.built(), "its search had the database index built"
    assert await first_index_valid(database)
    counted.taken = 0
    await lookup(semantic, "Which vitamins are in spinach leaves?", "index-full")
    assert counted.taken == 1, "the database searched"


async def test_purging_here_empties_the_index_at_once(replicas: Any) -> None:
    semantic, _, _ = replicas(refresh_s=3600.0)
    await store(semantic, QUESTION, "index-purge")
    await semantic.writes.flush()
    await loaded(semantic)
    assert (await lookup(semantic, NEAR, "index-purge")).hit is not None
    assert await semantic.purge(tenant_id="index-purge") == 1
    assert (await lookup(semantic, NEAR, "index-purge")).hit is None


async def first_index_valid(database: Database) -> bool | None:
    """Whether the first stage's database index is valid; None: there is none."""
    async with database.autocommit() as conn:
        cursor = await conn.execute(queries()["first_index_valid"])
        row = await cursor.fetchone()
    return None if row is None else bool(row["valid"])


async def index_definition(database: Database) -> str:
    async with database.autocommit() as conn:
        cursor = await conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'cache_entries_first_hnsw_256'"
        )
        row = await cursor.fetchone()
    assert row is not None
    return str(row["indexdef"])


async def test_no_database_index_is_kept_while_every_replica_searches_in_memory(
    replicas: Any, database: Database
) -> None:
    """Migration 0029: an entry costs no insert into an HNSW index nobody searches."""
    assert await first_index_valid(database) is None
    semantic, _, _ = replicas()
    await store(semantic, QUESTION, "index-none")
    await semantic.writes.flush()
    await loaded(semantic)
    assert (await lookup(semantic, NEAR, "index-none")).hit is not None
    assert not await semantic.database_index.built()
    assert await first_index_valid(database) is None


async def test_a_replica_without_an_index_has_the_database_index_built_light(
    database: Database, static: StaticEmbedder
) -> None:
    """``cache.semantic_index_entries: 0``: the database searches every lookup; it scans until
    the index is built, then uses it. Built as migration 0028 did (m 8, ef_construction 32:
    pgvector's default build cost an insert ~1 ms of PostgreSQL, bench.cache_index)."""
    first = FirstStage(static, "static-test", threshold=0.6)
    semantic = SemanticCache(database, CountingLetters(), embedder_id="letters", first_stage=first)
    try:
        assert semantic.index is None
        await store(semantic, QUESTION, "index-off")
        await semantic.writes.flush()
        found = await lookup(semantic, NEAR, "index-off")  # a scan: no index yet
        assert found.hit is not None
        assert await semantic.database_index.built()
        definition = await index_definition(database)
        assert "m='8'" in definition and "ef_construction='32'" in definition
        assert (await lookup(semantic, NEAR, "index-off")).hit is not None
    finally:
        await semantic.aclose()


async def test_an_index_a_failed_build_left_invalid_is_built_again(
    database: Database, static: StaticEmbedder
) -> None:
    """``CREATE INDEX CONCURRENTLY`` cut short leaves an invalid index, which PostgreSQL keeps
    up to date but never searches: it is dropped and built again."""
    async with database.autocommit() as conn:
        await conn.execute(queries()["first_index_build"])
        await conn.execute(
            "UPDATE pg_index SET indisvalid = false "
            "WHERE indexrelid = 'cache_entries_first_hnsw_256'::regclass"
        )
    assert await first_index_valid(database) is False
    first = FirstStage(static, "static-test", threshold=0.6)
    semantic = SemanticCache(database, CountingLetters(), embedder_id="letters", first_stage=first)
    try:
        await lookup(semantic, NEAR, "index-invalid")
        assert await semantic.database_index.built()
        assert await first_index_valid(database) is True
    finally:
        await semantic.aclose()


async def test_replicas_wanting_the_index_at_once_build_it_once(database: Database) -> None:
    """Two replicas' searches fall to the database together: the advisory lock lets one
    build while the other asks again (waiting on it would deadlock with the build), then
    finds it valid."""
    replicas = [DatabaseIndex(database), DatabaseIndex(database)]
    for replica in replicas:
        replica.wanted()
    assert [await replica.built() for replica in replicas] == [True, True]
    assert await first_index_valid(database) is True
    async with database.autocommit() as conn:
        cursor = await conn.execute(
            "SELECT count(*) AS n FROM pg_indexes WHERE indexname LIKE 'cache_entries_first%'"
        )
        row = await cursor.fetchone()
    assert row is not None and row["n"] == 1


async def test_a_failed_build_leaves_the_scan_serving_and_is_tried_again_later(
    database: Database, static: StaticEmbedder
) -> None:
    counted, clock = Counted(database), Clock()
    first = FirstStage(static, "static-test", threshold=0.6)
    semantic = SemanticCache(counted, CountingLetters(), embedder_id="letters", first_stage=first)
    semantic.database_index = DatabaseIndex(counted, monotonic=clock)
    try:
        await store(semantic, QUESTION, "index-build-fails")
        await semantic.writes.flush()
        counted.down = True
        semantic.database_index.wanted()
        assert not await semantic.database_index.built()
        counted.down = False
        assert (await lookup(semantic, NEAR, "index-build-fails")).hit is not None
        assert not await semantic.database_index.built(), "not tried again at once"
        clock.now += RETRY_S
        assert (await lookup(semantic, NEAR, "index-build-fails")).hit is not None
        assert await semantic.database_index.built()
        assert await first_index_valid(database) is True
    finally:
        await semantic.aclose()
