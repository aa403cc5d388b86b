"""The context-window check: small requests pass without counting, oversized ones are refused
after a bounded count, and odd shapes never crash it."""

from __future__ import annotations

from typing import Any

import pytest

from propylon.errors import ContextWindowExceeded
from propylon.gateway.context_window import ContextWindowCheck
from propylon.settings import ModelConfig
from propylon.tokens import TokenCounter

MODEL = ModelConfig.model_validate(
    {
        "name": "gpt-test",
        "context_window": 1000,
        "deployments": [{"provider": "openai", "base_url": "http://127.0.0.1:1/v1"}],
    }
)


class CountingCounter(TokenCounter):
    def __init__(self) -> None:
        self.calls = 0

    def count_messages(self, *args: Any, **kwargs: Any) -> int:
        self.calls += 1
        return super().count_messages(*args, **kwargs)


def request(content: Any, **fields: Any) -> dict[str, Any]:
    return {"model": "gpt-test", "messages": [{"role": "user", "content": content}], **fields}


def test_a_small_request_passes_without_counting() -> None:
    counter = CountingCounter()
    ContextWindowCheck(counter).check(MODEL, request("hello there", max_tokens=100))
    assert counter.calls == 0


def test_a_request_near_the_window_is_counted_and_passes_when_it_fits() -> None:
    counter = CountingCounter()
    ContextWindowCheck(counter).check(MODEL, request("word " * 500))  # 2,500 chars, 500 tokens
    assert counter.calls == 1


def test_an_8_mb_prompt_is_refused() -> None:
    with pytest.raises(ContextWindowExceeded):
        ContextWindowCheck(TokenCounter()).check(MODEL, request("lorem ipsum " * 700_000))


@pytest.mark.parametrize("text", ["x", "x" * 300])
def test_deeply_nested_content_does_not_crash_the_check(text: str) -> None:
    nested: Any = text
    for _ in range(1000):  # deeper than orjson serialises, as deep as it parses
        nested = [nested]
    ContextWindowCheck(TokenCounter()).check(MODEL, request([{"type": "text", "x": nested}]))
