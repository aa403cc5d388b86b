"""Budgets: tokens and cost per period, per key and per tenant, and the price table."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from propylon.access import amounts
from propylon.errors import InvalidRequest
from propylon.params import only_fields
from propylon.settings import ModelPrice

Period = Literal["day", "month"]


@dataclass(frozen=True, slots=True)
class Budget:
    """Most tokens and US dollars spent per calendar ``period`` (UTC); ``None``: no cap."""

    period: Period = "month"
    tokens: int | None = None
    cost_usd: float | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, where: str = "budget") -> Budget:
        """A budget an operator gives: ``tokens`` a whole number and ``cost_usd`` a number,
        each from 0 to 2^53, else a 400 naming it (``budget.tokens``)."""
        raw = raw or {}
        only_fields(raw, ("period", "tokens", "cost_usd"), where)
        period = raw.get("period", "month")
        if period not in ("day", "month"):
            raise InvalidRequest(
                f"`{where}.period` must be `day` or `month`.", param=f"{where}.period"
            )
        return cls(
            period=period,
            tokens=amounts.count(raw, "tokens", where, low=0),
            cost_usd=amounts.dollars(raw, "cost_usd", where),
        )

    @classmethod
    def stored(cls, raw: Mapping[str, Any] | None) -> Budget:
        """A budget as a row holds it (``parse``'s, or an older one: bounded)."""
        raw = raw or {}
        cost = raw.get("cost_usd")
        return cls(
            period=raw.get("period", "month"),
            tokens=amounts.stored_count(raw.get("tokens")),
            cost_usd=None if cost is None else float(cost),
        )

    @property
    def is_set(self) -> bool:
        return self.tokens is not None or self.cost_usd is not None

    def to_json(self) -> dict[str, Any]:
        if not self.is_set:
            return {}
        out: dict[str, Any] = {"period": self.period}
        if self.tokens is not None:
            out["tokens"] = self.tokens
        if self.cost_usd is not None:
            out["cost_usd"] = self.cost_usd
        return out

    def start(self, today: dt.date) -> dt.date:
        """The first day of the period that contains ``today``."""
        return today if self.period == "day" else today.replace(day=1)

    def refusal(self, spent_tokens: int, spent_cost: float, tokens: int, cost: float) -> str | None:
        """Why spending ``tokens`` / ``cost`` more would break this budget, or ``None``."""
        if self.tokens is not None and spent_tokens + tokens > self.tokens:
            return f"{spent_tokens} of {self.tokens} tokens this {self.period} already spent"
        if self.cost_usd is not None and spent_cost + cost > self.cost_usd:
            return f"{usd(spent_cost)} of {usd(self.cost_usd)} this {self.period} already spent"
        return None


def usd(value: float) -> str:
    """Dollars as a person reads them in a refusal: cents at least, and every digit down to
    10^-10 that is not zero (a budget of $0.0001 was shown as "$0.0000 of $0.0001")."""
    digits = f"{value:.10f}".rstrip("0")
    whole, _, cents = digits.partition(".")
    return f"${whole}.{cents.ljust(2, '0')}"


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million prompt, completion and cached prompt tokens."""

    input_per_million: float = 0.0
    output_per_million: float = 0.0
    cached_input_per_million: float | None = None  # None: the same as ``input_per_million``


class PriceTable:
    """The one place the cost of a call is computed: budgets, the request log, ``/v1/stats``
    and the metrics all read it from here (0 for a model without a price)."""

    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._prices = dict(prices)

    def priced(self, model: str | None) -> bool:
        return model in self._prices

    def cost(
        self, model: str | None, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
    ) -> float:
        """US dollars for the tokens of one call; ``cached_tokens`` are part of the prompt."""
        price = self._prices.get(model or "")
        if price is None:
            return 0.0
        cached = min(max(cached_tokens, 0), prompt_tokens)
        cached_price = (
            price.cached_input_per_million
            if price.cached_input_per_million is not None
            else price.input_per_million
        )
        return (
            (prompt_tokens - cached) * price.input_per_million
            + cached * cached_price
            + completion_tokens * price.output_per_million
        ) / 1_000_000


def price_table(prices: Mapping[str, ModelPrice]) -> PriceTable:
    """The price table of the configuration (``observe.prices``)."""
    return PriceTable(
        {name: Price(p.input, p.output, p.cached_input) for name, p in prices.items()}
    )
