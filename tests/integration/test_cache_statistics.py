"""The semantic cache keeps PostgreSQL's statistics of ``cache_entries`` current as it writes
(``semantic.ANALYZE_FROM``): a search the database makes is planned knowing how large a
scope has grown. On a fresh table the planner took a 5,500-entry scope for one row and sorted
it whole (7.6 ms a search instead of 1.0 ms by its HNSW index). Real PostgreSQL, a new
database per test."""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from typing import Any

import pytest

from propylon.db.database import Database
from propylon.gateway.cache.first_stage import FirstStage
from propylon.gateway.cache.semantic import SemanticCache
from propylon.local.static import StaticEmbedder
from tests.integration.test_cache_first_stage import CountingLetters, key, store

TENANT = "statistics"


class AnalysisRefused:
    """The database, refusing every autocommit connection (the statistics refresh takes one;
    an entry's write does not)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def connection(self, timeout: float | None = None) -> AbstractAsyncContextManager[Any]:
        return self.db.connection(timeout)

    def autocommit(self, timeout: float | None = None) -> AbstractAsyncContextManager[Any]:
        raise ConnectionError("database unavailable")


def cache(db: Any, static: StaticEmbedder, analyze_from: int) -> SemanticCache:
    first = FirstStage(static, "static-test", threshold=0.6)
    return SemanticCache(
        db, CountingLetters(), embedder_id="letters", first_stage=first, analyze_from=analyze_from
    )


async def planned_rows(database: Database) -> float:
    """The planner's estimate of the rows of the test's scope."""
    scope = key("any question", TENANT)
    async with database.autocommit() as conn:
        cursor = await conn.execute(
            "EXPLAIN (FORMAT JSON) SELECT id FROM cache_entries "
            "WHERE tenant_id = %s AND model = %s AND scope = %s",
            (scope.tenant_id, scope.model, scope.scope),
        )
        row = await cursor.fetchone()
    assert row is not None
    return float(row["QUERY PLAN"][0]["Plan"]["Plan Rows"])


async def stored(semantic: SemanticCache, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        await store(semantic, f"How long is river number {i}?", TENANT)
    await semantic.writes.flush()


async def test_the_planner_learns_how_large_a_scope_has_grown(
    database: Database, static: StaticEmbedder
) -> None:
    semantic = cache(database, static, analyze_from=12)
    try:
        await stored(semantic, 11)
        assert semantic.analyzed == 0
        assert await planned_rows(database) < 5, "a fresh table: the planner guesses one row"
        await stored(semantic, 1, start=11)
        assert semantic.analyzed == 1
        assert await planned_rows(database) == 12
        await stored(semantic, 11, start=12)
        assert semantic.analyzed == 1, "the next refresh at twice the inserts: 24"
        await stored(semantic, 1, start=23)
        assert semantic.analyzed == 2
        assert await planned_rows(database) == 24
    finally:
        await semantic.aclose()


async def test_a_failed_refresh_costs_no_entry_and_is_logged(
    database: Database, static: StaticEmbedder, caplog: pytest.LogCaptureFixture
) -> None:
    semantic = cache(AnalysisRefused(database), static, analyze_from=3)
    try:
        with caplog.at_level(logging.WARNING, logger="propylon.gateway.cache.semantic"):
            await stored(semantic, 3)
        assert semantic.analyzed == 0
        assert semantic.stats.dropped == 0 and semantic.stats.errors["database"] == 0
        assert "refreshing the table's statistics failed" in caplog.text
        async with database.autocommit() as conn:
            cursor = await conn.execute(
                "SELECT count(*) AS n FROM cache_entries WHERE tenant_id = %s", (TENANT,)
            )
            row = await cursor.fetchone()
        assert row is not None and row["n"] == 3, "every entry written"
    finally:
        await semantic.aclose()
