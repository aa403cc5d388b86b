"""Cache keys: equal requests share a key; anything that changes the answer changes it."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from propylon.gateway.cache import key as key_module
from propylon.gateway.cache.key import OFF_LOOP_CHARS, cache_key, cache_key_off_loop, last_question


def request(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": "Hi there"}], **fields}


def key(body: dict[str, Any], tenant: str = "t1", salt: str = "") -> Any:
    return cache_key(body, tenant_id=tenant, model="m", salt=salt)


def test_fields_that_do_not_change_the_answer_do_not_change_the_key() -> None:
    plain = key(request(temperature=0))
    assert key(request(temperature=0.0, stream=True, user="u", propylon={"cache": {}})) == plain
    assert key({**request(temperature=0), "metadata": {"a": 1}, "model": "alias"}) == plain


def test_sampling_tenant_and_salt_change_the_exact_key_and_the_scope() -> None:
    base = key(request(temperature=0))
    for other in (
        key(request(temperature=0.5)),
        key(request(temperature=0, seed=1)),
        key(request(temperature=0), tenant="t2"),
        key(request(temperature=0), salt="v2"),
    ):
        assert other.exact != base.exact
        assert other.scope != base.scope


def test_a_huge_integral_number_is_keyed_like_any_other() -> None:
    tool = {"type": "function", "function": {"name": "f", "parameters": {"maximum": 1e20}}}
    assert key(request(seed=1e20)) != key(request(seed=1e19))
    assert key(request(tools=[tool])) == key(request(tools=[tool]))
    assert key(request(seed=2.0**62)) == key(request(seed=2**62))


def test_rewording_the_last_question_keeps_the_scope() -> None:
    a = key(request())
    b = key({**request(), "messages": [{"role": "user", "content": "Hello there"}]})
    assert a.exact != b.exact
    assert a.scope == b.scope
    assert (a.question, b.question) == ("Hi there", "Hello there")


def test_the_system_prompt_and_earlier_turns_are_part_of_the_scope() -> None:
    plain = key(request())
    system = {"role": "system", "content": "Be terse."}
    assert key({**request(), "messages": [system, *request()["messages"]]}).scope != plain.scope


def test_only_a_trailing_text_user_message_is_a_question() -> None:
    assert (
        last_question({"messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]})
        == "a"
    )
    image = {"type": "image_url", "image_url": {"url": "data:"}}
    assert last_question({"messages": [{"role": "user", "content": [image]}]}) is None
    assert last_question({"messages": [{"role": "assistant", "content": "x"}]}) is None
    assert last_question({"messages": "nonsense"}) is None


def test_without_a_semantic_cache_only_the_exact_key_is_made() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "What is RAG?"}]}
    full = cache_key(body, tenant_id="t", model="m")
    exact_only = cache_key(body, tenant_id="t", model="m", semantic=False)
    assert exact_only.exact == full.exact  # the same exact-cache entry either way
    assert full.question == "What is RAG?" and full.scope != full.exact
    assert exact_only.question is None and exact_only.scope == exact_only.exact


@pytest.mark.parametrize("chars", [100, OFF_LOOP_CHARS + 1])
async def test_a_large_prompt_is_keyed_in_a_thread_to_the_same_key(
    chars: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    parts = [{"type": "text", "text": "x" * (chars - 1)}, {"type": "text", "text": "y"}]
    body = request(messages=[{"role": "user", "content": parts}])
    threads: list[str] = []
    original = key_module.cache_key

    def spying(*args: Any, **kwargs: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(*args, **kwargs)

    monkeypatch.setattr(key_module, "cache_key", spying)
    assert await cache_key_off_loop(body, tenant_id="t1", model="m") == key(body)
    on_loop = threads == [threading.main_thread().name]
    assert on_loop is (chars <= OFF_LOOP_CHARS)
