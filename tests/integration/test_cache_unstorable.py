"""A NUL in a cached question or answer, over real HTTP: the client gets the answer as the
upstream gave it, a repeat gets the same bytes (an exact hit) or a fresh answer (the semantic
cache, in PostgreSQL, skips what it cannot store as served), never another text nor a 500."""

from __future__ import annotations

import uuid
from typing import Any

import openai
import psycopg

from propylon.testing import Behaviour, FakeUpstream, ScriptedTurn
from tests.integration.observe.support import call, records, samples, value
from tests.integration.test_cache import ADMIN, Cached, ask, cached_gateway, entry_threshold

ANSWER = "Use\x00 reversed(items), or items[::-1]."
# Every error source and skip reason is in the stats from the start, at 0.
NO_ERRORS = {"database": 0, "embedder": 0, "redis": 0, "timeout": 0}
NONE_SKIPPED = {"unstorable_answer": 0, "unstorable_question": 0}
TOOLS = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]


def answer(body: dict[str, Any]) -> str:
    content: str = body["choices"][0]["message"]["content"]
    return content


async def cache_rows(database_url: str) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute("SELECT count(*) FROM cache_entries")
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])


async def asked_twice(gateway: Cached, request: dict[str, Any]) -> dict[str, Any]:
    """``request`` sent twice: a miss, then an exact hit with the same body; the first body."""
    status, headers, first = await gateway.chat(request)
    assert (status, headers["x-propylon-cache"]) == (200, "miss")
    status, headers, again = await gateway.chat(request)
    assert (status, headers["x-propylon-cache"], again) == (200, "hit-exact", first), (
        "the exact cache serves the bytes it was given"
    )
    return first


async def test_an_answer_holding_a_nul_is_served_as_given_and_never_altered_by_the_cache(
    database_url: str, upstream: FakeUpstream
) -> None:
    # A request offering tools gets the scripted answer: a clean question, a NUL in the answer.
    upstream.set_behaviour(Behaviour(script=(ScriptedTurn(text=ANSWER),)))
    async with cached_gateway(database_url, upstream) as gateway:
        first = await asked_twice(gateway, ask(tools=TOOLS))
        assert answer(first) == ANSWER

        status, headers, reworded = await gateway.chat(
            ask("How can I reverse a list in Python?", tools=TOOLS)
        )
        assert (status, headers["x-propylon-cache"]) == (200, "miss"), "not stored, not altered"
        assert answer(reworded) == ANSWER

        # A clean entry after them is written: by then the skipped ones would have been too.
        await gateway.chat(ask("What is the capital of France?"))
        await entry_threshold(database_url)
        assert await cache_rows(database_url) == 1
        _, stats = await gateway.admin("GET", "/admin/cache/stats")
        assert stats["skipped"] == {**NONE_SKIPPED, "unstorable_answer": 2}
        assert stats["errors"] == NO_ERRORS, "nothing refused by the database"

        logged = await records(gateway.server, 4, "limit=10", key=ADMIN)
        with_nul = [r for r in logged if "\\u0000" in (r["response"] or "")]
        assert len(with_nul) == 3, "each NUL answer is in the request log, escaped"
        assert {r["status"] for r in logged} == {200}


async def test_a_question_holding_a_nul_is_answered_repeated_identically_and_counted_skipped(
    database_url: str, upstream: FakeUpstream
) -> None:
    question = "How do I reverse a\x00list in Python?"  # the echo puts the NUL in the answer
    async with cached_gateway(database_url, upstream) as gateway:
        first = await asked_twice(gateway, ask(question))
        assert "a\x00list" in answer(first)

        _, stats = await gateway.admin("GET", "/admin/cache/stats")
        assert stats["skipped"] == {**NONE_SKIPPED, "unstorable_question": 1}
        assert stats["errors"] == NO_ERRORS
        exposed = samples((await call(gateway.server, "GET", "/metrics", key=None)).body)
        skipped = exposed["propylon_cache_semantic_skipped"]
        name = "propylon_cache_semantic_skipped_total"
        assert value(skipped, name, reason="unstorable_question") == 1
        logged = await records(gateway.server, 2, "limit=10", key=ADMIN)
        assert all("a\\u0000list" in (r["response"] or "") for r in logged), logged


async def test_the_redis_exact_cache_serves_a_nul_answer_byte_for_byte(
    database_url: str, upstream: FakeUpstream
) -> None:
    question = "Reverse a\x00list?"
    async with cached_gateway(
        database_url,
        upstream,
        redis_url="redis://127.0.0.1:6379/0",
        cache={"redis_prefix": f"test:{uuid.uuid4().hex}:", "semantic": False},
    ) as gateway:
        first = await asked_twice(gateway, ask(question))
        assert "a\x00list?" in answer(first)
        _, stats = await gateway.admin("GET", "/admin/cache/stats")
        assert stats["errors"] == NO_ERRORS and stats["skipped"] == NONE_SKIPPED


async def test_an_answer_quoting_a_backslash_u0000_as_text_is_still_cached(
    database_url: str, upstream: FakeUpstream
) -> None:
    quoted = "JSON writes a NUL as \\u0000 (six characters here, no NUL)."
    upstream.set_behaviour(Behaviour(script=(ScriptedTurn(text=quoted),)))
    async with cached_gateway(database_url, upstream) as gateway:
        await gateway.chat(ask(tools=TOOLS))
        await entry_threshold(database_url)  # written
        status, headers, reworded = await gateway.chat(
            ask("How can I reverse a list in Python?", tools=TOOLS)
        )
        assert (status, headers["x-propylon-cache"]) == (200, "hit-semantic")
        assert answer(reworded) == quoted
        _, stats = await gateway.admin("GET", "/admin/cache/stats")
        assert stats["skipped"] == NONE_SKIPPED and stats["errors"] == NO_ERRORS


async def test_a_streamed_nul_answer_is_replayed_and_served_plain_unchanged(
    database_url: str, upstream: FakeUpstream
) -> None:
    question = "Stream how to reverse a\x00list?"

    async def streamed(sdk: openai.AsyncOpenAI) -> tuple[str, str]:
        response = await sdk.chat.completions.with_raw_response.create(
            model="gpt-test",
            messages=[{"role": "user", "content": question}],
            temperature=0,
            stream=True,
        )
        text = ""
        async for chunk in response.parse():
            text += "".join(choice.delta.content or "" for choice in chunk.choices)
        return text, response.headers["x-propylon-cache"]

    async with (
        cached_gateway(database_url, upstream) as gateway,
        openai.AsyncOpenAI(base_url=gateway.server.v1, api_key=gateway.key, max_retries=0) as sdk,
    ):
        live, status = await streamed(sdk)
        assert status == "miss" and "a\x00list?" in live
        replayed, status = await streamed(sdk)
        assert (replayed, status) == (live, "hit-exact")
        _, headers, plain = await gateway.chat(ask(question))
        assert (headers["x-propylon-cache"], answer(plain)) == ("hit-exact", live)
        _, stats = await gateway.admin("GET", "/admin/cache/stats")
        assert stats["skipped"] == {**NONE_SKIPPED, "unstorable_question": 1}
        assert stats["errors"] == NO_ERRORS
