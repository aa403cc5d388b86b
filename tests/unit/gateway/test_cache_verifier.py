"""The second check refuses candidates that embeddings rate close but mean otherwise."""

from __future__ import annotations

import pytest

from propylon.gateway.cache.verifier import Verifier


@pytest.mark.parametrize(
    ("question", "candidate", "reason"),
    [
        ("Is it safe to eat raw eggs?", "Is it not safe to eat raw eggs?", "negation"),
        ("Why doesn't my code compile?", "Why does my code compile?", "negation"),
        ("Stocks close 0.39% higher", "Stocks close 2.47% higher", "numbers"),
        ("Chinese shares close higher", "Chinese shares close lower", "direction"),
        ("News for Friday", "News for Tuesday", "calendar"),
    ],
)
def test_refuses_opposite_meanings(question: str, candidate: str, reason: str) -> None:
    assert Verifier().refusal(question, candidate) == reason


@pytest.mark.parametrize(
    ("question", "candidate"),
    [
        ("How do I reverse a list in Python?", "How can I reverse a list in Python?"),
        ("What is the capital of France?", "What's the capital city of France?"),
        ("You may want to read chapter 5", "You can look at chapter 5"),
        ("Prices went higher in 2020", "In 2020 prices rose higher"),
    ],
)
def test_lets_paraphrases_through(question: str, candidate: str) -> None:
    assert Verifier().refusal(question, candidate) is None
