"""The semantic cache's store on a real PostgreSQL + pgvector: scope, expiry, and the record
of every lookup kept for threshold tuning."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import numpy as np
import pytest

from propylon.db.database import Database
from propylon.gateway.cache.key import cache_key
from propylon.gateway.cache.semantic import SemanticCache
from propylon.gateway.cache.verifier import JudgeWeights, Verifier
from propylon.gateway.protocol import Embeddings


class Letters:
    """384-dimensional letter counts: a text and its near copies land close together."""

    async def embed(self, texts: list[str], request: dict[str, Any] | None = None) -> Embeddings:
        out = []
        for text in texts:
            v = np.zeros(384, dtype=np.float32)
            for ch in text.lower():
                v[ord(ch) % 384] += 1
            out.append((v / np.linalg.norm(v)).tolist())
        return Embeddings(out, prompt_tokens=0)


Caches = Callable[..., SemanticCache]


@pytest.fixture
async def caches(database: Database) -> AsyncIterator[Caches]:
    """Makes semantic caches on the test's database; closes them (their write-behind tasks
    included) before the test ends, so nothing of one test writes during another."""
    made: list[SemanticCache] = []

    def make(**options: Any) -> SemanticCache:
        cache = SemanticCache(database, Letters(), embedder_id="letters", **options)
        made.append(cache)
        return cache

    yield make
    for cache in made:
        await cache.aclose()


def key(question: str, tenant: str = "t1", system: str | None = None) -> Any:
    messages = [{"role": "system", "content": system}] if system else []
    body = {"model": "m", "messages": [*messages, {"role": "user", "content": question}]}
    return cache_key(body, tenant_id=tenant, model="m")


async def store(cache: SemanticCache, question: str, **scope: Any) -> None:
    k = key(question, **scope)
    answer = {"choices": [{"message": {"content": f"answer to {question}"}}]}
    await cache.add(k, question, await cache.embed(question), answer, ttl_s=60)


async def lookup(cache: SemanticCache, question: str, **scope: Any) -> Any:
    k = key(question, **scope)
    return await cache.find(k, question, await cache.embed(question), threshold=0.9)


async def lookups(cache: SemanticCache, database: Database) -> list[dict[str, Any]]:
    await cache.writes.flush()
    async with database.connection() as conn:
        cursor = await conn.execute(
            "SELECT outcome, best_similarity, reason FROM cache_lookups ORDER BY id"
        )
        return list(await cursor.fetchall())


async def entries(database: Database) -> int:
    async with database.connection() as conn:
        cursor = await conn.execute("SELECT count(*) AS n FROM cache_entries")
        return int((await cursor.fetchall())[0]["n"])


async def test_finds_a_close_question_only_inside_its_scope(
    database: Database, caches: Caches
) -> None:
    cache = caches()
    await store(cache, "what is the boiling point of water")

    found = await lookup(cache, "what is the boiling point of water?")
    assert found.hit is not None and found.hit.similarity > 0.99
    assert found.hit.response["choices"][0]["message"]["content"].startswith("answer to")
    assert (await lookup(cache, "what is the boiling point of water?", tenant="t2")).hit is None
    other_system = await lookup(cache, "what is the boiling point of water?", system="Be brief")
    assert other_system.hit is None and other_system.best_similarity is None


async def test_an_entry_is_found_before_and_after_it_is_written(
    database: Database, caches: Caches
) -> None:
    cache = caches(write_delay_s=60.0)
    await store(cache, "what is the boiling point of water")
    assert await entries(database) == 0, "the answer did not wait for the write"

    queued = await lookup(cache, "what is the boiling point of water??")
    assert queued.hit is not None and queued.hit.entry_id is None and queued.hit.similarity > 0.95
    assert (await lookup(cache, "what is the boiling point of water?", tenant="t2")).hit is None

    await cache.aclose()  # writes what is queued
    assert await entries(database) == 1
    written = await lookup(cache, "what is the boiling point of water??")
    assert written.hit is not None and written.hit.entry_id is not None
    assert written.hit.response == queued.hit.response
    assert queued.hit.similarity == pytest.approx(written.hit.similarity, abs=1e-5), "as pgvector"
    await cache.aclose()


async def test_an_expired_entry_is_never_served(database: Database, caches: Caches) -> None:
    cache = caches()
    await store(cache, "what is the boiling point of water")
    await cache.writes.flush()
    async with database.connection() as conn:
        await conn.execute("UPDATE cache_entries SET expires_at = now() - interval '1 second'")
    assert (await lookup(cache, "what is the boiling point of water")).hit is None


async def test_every_lookup_is_recorded_with_its_best_similarity(
    database: Database, caches: Caches
) -> None:
    cache = caches(verifier=Verifier(JudgeWeights.load()))
    await store(cache, "is the boiling point of water 100 degrees")
    await lookup(cache, "is the boiling point of water 100 degrees?")
    await lookup(cache, "is the boiling point of water 90 degrees?")
    await lookup(cache, "something else entirely, unrelated to all of it")

    hit, rejected, miss = await lookups(cache, database)
    assert hit["outcome"] == "hit" and hit["best_similarity"] > 0.99
    assert (rejected["outcome"], rejected["reason"]) == ("rejected", "numbers_differ")
    assert miss["outcome"] == "miss" and miss["best_similarity"] < 0.9


async def test_lookups_of_an_empty_scope_are_recorded_with_their_blanks(
    database: Database, caches: Caches
) -> None:
    cache = caches()
    await lookup(cache, "nothing is cached in this scope yet")
    await lookup(cache, "nor for this one", tenant="t2")

    recorded = await lookups(cache, database)
    assert [(r["outcome"], r["best_similarity"], r["reason"]) for r in recorded] == [
        ("miss", None, None),
        ("miss", None, None),
    ]


async def test_an_entry_stores_its_vector_exactly(database: Database, caches: Caches) -> None:
    cache = caches()
    question = "what is the boiling point of water"
    embedding = await cache.embed(question)
    await store(cache, question)
    await cache.writes.flush()

    async with database.connection() as conn:
        cursor = await conn.execute("SELECT embedding::text AS v, dims FROM cache_entries")
        (row,) = await cursor.fetchall()
    stored = np.array(row["v"][1:-1].split(","), dtype=np.float32)
    assert row["dims"] == 384 and np.array_equal(stored, embedding.values)


async def test_purge_by_tenant_and_by_model(database: Database, caches: Caches) -> None:
    cache = caches()
    await store(cache, "first question")
    await store(cache, "second question", tenant="t2")
    assert await cache.purge(tenant_id="t1") == 1
    assert await cache.purge(model="m") == 1
    assert await cache.purge(model="m") == 0


async def test_an_answer_postgresql_refuses_is_dropped_without_holding_back_the_others(
    database: Database, caches: Caches
) -> None:
    cache = caches(write_delay_s=60.0)
    poison = {"choices": [{"message": {"content": "a NUL \u0000 jsonb cannot hold"}}]}
    question = "what is the boiling point of water"
    await cache.add(key(question), question, await cache.embed(question), poison, ttl_s=60)
    await store(cache, "what is the melting point of ice")
    nul_question = "a question with a \x00 in it"
    await store(cache, nul_question)  # not even queued: its search fails the same way

    await cache.writes.flush()
    assert await entries(database) == 1
    assert cache.writes.refused == 1 and cache.writes.pending == 0
    assert (await lookup(cache, "what is the melting point of ice?")).hit is not None
    await cache.aclose()
