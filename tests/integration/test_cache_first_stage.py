"""The semantic cache behind its static first stage, on a real PostgreSQL + pgvector: a miss
and a store run no embedder call; a near question runs it once for itself and once for the
cached question, whose vector is then kept."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest

from propylon.db.database import Database
from propylon.db.migrator import migrate
from propylon.gateway.cache.first_stage import FirstStage
from propylon.gateway.cache.key import cache_key
from propylon.gateway.cache.semantic import SemanticCache
from propylon.gateway.cache.verifier import JudgeWeights, Verifier
from propylon.gateway.protocol import Embeddings
from propylon.local.static import StaticEmbedder
from tests.integration.test_semantic_store import Letters


class CountingLetters(Letters):
    """A stand-in for the transformer: letter counts, and a count of the texts it read."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def embed(self, texts: list[str], request: dict[str, Any] | None = None) -> Embeddings:
        self.texts += texts
        return await super().embed(texts, request)


@asynccontextmanager
async def staged_cache(
    database_url: str, static: StaticEmbedder, verifier: Verifier | None = None
) -> AsyncIterator[tuple[SemanticCache, CountingLetters, Database]]:
    """A semantic cache behind the first stage on a migrated database, its entries deleted
    after."""
    db = Database(database_url)
    await db.open()
    await migrate(db)
    embedder = CountingLetters()
    first = FirstStage(static, "static-test", threshold=0.6)
    semantic = SemanticCache(
        db, embedder, embedder_id="letters", verifier=verifier, first_stage=first
    )
    try:
        yield semantic, embedder, db
    finally:
        await semantic.aclose()
        async with db.connection() as conn:
            await conn.execute("DELETE FROM cache_entries WHERE embedder = 'letters'")
        await db.close()


@pytest.fixture
async def cache(
    database_url: str, static: StaticEmbedder
) -> AsyncIterator[tuple[SemanticCache, CountingLetters, Database]]:
    async with staged_cache(database_url, static) as opened:
        yield opened


def key(question: str, tenant: str) -> Any:
    body = {"model": "m", "messages": [{"role": "user", "content": question}]}
    return cache_key(body, tenant_id=tenant, model="m")


async def store(semantic: SemanticCache, question: str, tenant: str) -> None:
    assert semantic.first_stage is not None
    first = await semantic.first_stage.vector(question)
    answer = {"choices": [{"message": {"content": f"answer to {question}"}}]}
    await semantic.add(key(question, tenant), question, None, answer, ttl_s=60, first=first)


async def lookup(semantic: SemanticCache, question: str, tenant: str) -> Any:
    assert semantic.first_stage is not None
    first = await semantic.first_stage.vector(question)
    return await semantic.find_staged(key(question, tenant), question, first, threshold=0.9)


async def test_a_miss_and_a_store_run_no_embedder_call(
    cache: tuple[SemanticCache, CountingLetters, Database],
) -> None:
    semantic, embedder, _ = cache
    tenant = "first-stage-miss"
    for question in ("How do I reverse a list in Python?", "What is the capital of Peru?"):
        await store(semantic, question, tenant)
    await semantic.writes.flush()

    missed = await lookup(semantic, "Which vitamins are in spinach leaves?", tenant)
    assert missed.hit is None and missed.reason == "first-stage"
    assert embedder.texts == [], "neither the store nor the miss ran the embedder"
    # what /metrics and /admin/cache/stats show
    assert semantic.stats.first_stage == {"decided": 1, "deferred": 0}


async def test_an_entry_stores_the_static_vector_exactly_as_computed(
    cache: tuple[SemanticCache, CountingLetters, Database], static: StaticEmbedder
) -> None:
    semantic, _, db = cache
    tenant, question = "first-stage-exact", "How do I reverse a list in Python?"
    await store(semantic, question, tenant)
    await semantic.writes.flush()

    async with db.connection() as conn:
        cursor = await conn.execute(
            "SELECT first_vector::text AS v FROM cache_entries WHERE tenant_id = %s", (tenant,)
        )
        (row,) = await cursor.fetchall()
    stored = np.array(row["v"][1:-1].split(","), dtype=np.float32)
    assert np.array_equal(stored, static.vector(question))


async def test_a_near_question_embeds_itself_and_its_candidate_once(
    cache: tuple[SemanticCache, CountingLetters, Database],
) -> None:
    semantic, embedder, db = cache
    tenant = "first-stage-hit"
    await store(semantic, "How do I reverse a list in Python?", tenant)
    await semantic.writes.flush()

    found = await lookup(semantic, "How do I reverse a list in Python??", tenant)
    assert found.hit is not None and found.hit.entry_id is not None
    assert found.embedding is not None, "kept for the store that may follow"
    assert semantic.stats.first_stage == {"decided": 0, "deferred": 1}
    assert sorted(embedder.texts) == sorted(
        ["How do I reverse a list in Python??", "How do I reverse a list in Python?"]
    )
    async with db.connection() as conn:
        cursor = await conn.execute(
            "SELECT dims FROM cache_entries WHERE tenant_id = %(t)s", {"t": tenant}
        )
        assert [row["dims"] for row in await cursor.fetchall()] == [384]

    embedder.texts.clear()
    again = await lookup(semantic, "How do I reverse a list in Python???", tenant)
    assert again.hit is not None
    assert embedder.texts == ["How do I reverse a list in Python???"], "the entry's vector was kept"


async def test_a_queued_entry_is_found_by_the_first_stage(
    cache: tuple[SemanticCache, CountingLetters, Database],
) -> None:
    semantic, embedder, db = cache
    tenant = "first-stage-queued"
    await store(semantic, "How do I reverse a list in Python?", tenant)
    found = await lookup(semantic, "How do I reverse a list in Python??", tenant)
    assert found.hit is not None and found.hit.entry_id is None
    other = await lookup(semantic, "How do I reverse a list in Python??", "another-tenant")
    assert other.hit is None

    # The queued entry keeps the vector its first near lookup computed: not computed again,
    # and written with its row.
    embedder.texts.clear()
    again = await lookup(semantic, "How do I reverse a list in Python???", tenant)
    assert again.hit is not None
    assert embedder.texts == ["How do I reverse a list in Python???"]
    await semantic.writes.flush()
    async with db.connection() as conn:
        cursor = await conn.execute(
            "SELECT dims FROM cache_entries WHERE tenant_id = %(t)s", {"t": tenant}
        )
        assert [row["dims"] for row in await cursor.fetchall()] == [384]


async def test_an_entry_needs_a_vector_of_some_kind(
    cache: tuple[SemanticCache, CountingLetters, Database],
) -> None:
    semantic, _, _ = cache
    with pytest.raises(ValueError, match="embedding or its first-stage vector"):
        await semantic.add(key("q", "t"), "q", None, {}, ttl_s=60)


async def test_a_near_question_the_second_check_vetoes_runs_no_embedder_call(
    database_url: str, static: StaticEmbedder
) -> None:
    verifier = Verifier(JudgeWeights.load())
    async with staged_cache(database_url, static, verifier) as (semantic, embedder, _):
        tenant = "first-stage-veto"
        await store(semantic, "Say hello to request #00000012.", tenant)
        missed = await lookup(semantic, "Say hello to request #00000013.", tenant)
        assert missed.hit is None and missed.reason == "first-stage"
        assert embedder.texts == [], "another number: refused before any embedding"


async def test_a_repeated_question_is_served_without_an_embedder_call(
    cache: tuple[SemanticCache, CountingLetters, Database],
) -> None:
    """The very question is served unjudged (``_choose``), so neither its vector nor its
    twin's is needed: an exact-cache miss of a question asked before (another replica, a
    restart) costs no transformer call."""
    semantic, embedder, _ = cache
    tenant, question = "first-stage-repeated", "How do I reverse a list in Python?"
    await store(semantic, question, tenant)
    for _ in range(2):  # still queued, then written
        found = await lookup(semantic, question, tenant)
        assert found.hit is not None and found.best_similarity == 1.0
        assert found.hit.response["choices"][0]["message"]["content"] == f"answer to {question}"
        await semantic.writes.flush()
    assert found.hit.entry_id is not None
    assert embedder.texts == []
    assert semantic.stats.first_stage == {"decided": 2, "deferred": 0}

    # A near question beside it still reads both texts, once.
    near = "How do I reverse a list in Python 3?"
    await lookup(semantic, near, tenant)
    assert sorted(embedder.texts) == sorted([near, question])
