"""Dollars in a refusal: read by a person deciding what to raise."""

from __future__ import annotations

import pytest

from propylon.access.budgets import Budget, usd


@pytest.mark.parametrize(
    ("value", "shown"),
    [(0.0, "$0.00"), (0.1, "$0.10"), (5, "$5.00"), (0.034, "$0.034"), (0.0001, "$0.0001"),
     (0.00003, "$0.00003"), (1234.5, "$1234.50")],
)  # fmt: skip
def test_dollars_keep_cents_and_every_digit_that_is_not_zero(value: float, shown: str) -> None:
    assert usd(value) == shown


def test_a_tiny_budget_is_not_shown_as_nothing_spent_of_nothing() -> None:
    """Was "$0.0000 of $0.0001 this month already spent"."""
    budget = Budget(period="month", tokens=None, cost_usd=0.0001)
    assert budget.refusal(0, 0.00004, 0, 0.00008) == "$0.00004 of $0.0001 this month already spent"
