"""Counting is bounded: one call encodes at most EXACT_CHARS characters and estimates the rest
at the rate it saw, so an 8 MB prompt costs what a 64 KB one does."""

from __future__ import annotations

import random
import string
from typing import Any

import pytest
import tiktoken

from propylon.tokens import TokenCounter
from propylon.tokens.counter import EXACT_CHARS


def prose(chars: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    words = [
        "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9)))
        for _ in range(3000)
    ]
    out: list[str] = []
    size = 0
    while size < chars:
        word = rng.choice(words)
        out.append(word)
        size += len(word) + 1
    return " ".join(out)[:chars]


@pytest.fixture
def encoded(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Lengths of every text handed to the BPE encoder from now on."""
    lengths: list[int] = []
    real = tiktoken.Encoding.encode_ordinary

    def spy(self: tiktoken.Encoding, text: str) -> Any:
        lengths.append(len(text))
        return real(self, text)

    monkeypatch.setattr(tiktoken.Encoding, "encode_ordinary", spy)
    return lengths


def test_a_huge_text_is_encoded_only_up_to_the_bound_and_estimated_closely(
    encoded: list[int],
) -> None:
    counter = TokenCounter()
    text = prose(2_000_000)
    estimate = counter.count_text(text, "gpt-4o")
    assert sum(encoded) == EXACT_CHARS
    encoded.clear()
    exact = len(counter.encoding_for("gpt-4o").encode_ordinary(text))
    assert abs(estimate - exact) / exact < 0.02


def test_the_bound_is_shared_by_every_message_of_a_request(encoded: list[int]) -> None:
    counter = TokenCounter()
    messages = [{"role": "user", "content": prose(40_000, seed=n)} for n in range(50)]
    counted = counter.count_messages(messages, "gpt-4o-mini")
    assert sum(encoded) <= EXACT_CHARS + 50 * len("user")
    assert counted > 50 * 40_000 // 8  # an estimate of the same order, not a floor


def test_ordinary_requests_are_counted_exactly(encoded: list[int]) -> None:
    counter = TokenCounter()
    text = prose(EXACT_CHARS)
    exact = len(counter.encoding_for("gpt-4o").encode_ordinary(text))
    assert counter.count_text(text, "gpt-4o") == exact
