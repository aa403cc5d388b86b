"""A call's layers report facts; its outcome is made of them once, frozen, with its spend."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, cast

import pytest

from propylon.access.budgets import price_table
from propylon.access.spend import outcome_of, spend_of
from propylon.gateway.call import (
    Answered,
    Attempt,
    CacheVerdict,
    CallInfo,
    GuardVerdict,
    ResponseHeaders,
    Routed,
    UsageReported,
)
from propylon.settings import ModelPrice

PRICES = price_table({"gpt-test": ModelPrice(input=1.0, output=2.0)})
USAGE = {"prompt_tokens": 1_000_000, "completion_tokens": 500_000}


def reported_call() -> CallInfo:
    """A call as the layers of the request path leave it: a sampled semantic hit the
    upstream answered after one failed attempt, flagged by the guard."""
    call = CallInfo(request_id="r1")
    call.report(Routed("alias"))  # the recorder: what the client asked for
    call.report(GuardVerdict({"action": "flag", "ms": 1.0}, "flag; score=0.500"))
    call.report(ResponseHeaders({"x-ratelimit-remaining-requests": "9"}))
    call.report(Routed(model="gpt-test"), CacheVerdict("miss", 0.93))  # the cache
    call.report(Routed("alias", "gpt-test"))  # the gateway
    call.report(Attempt("east", "upstream_error", 5.0), Attempt("west", "ok", 7.0))
    call.report(Answered("west"), UsageReported(USAGE))
    call.report(CacheVerdict("verify-agree"))  # the cache, once the answer is compared
    return call


def test_the_facts_are_folded_later_ones_of_a_kind_winning_and_none_lost() -> None:
    call = reported_call()
    assert (call.requested_model, call.model, call.deployment) == ("alias", "gpt-test", "west")
    assert [a.deployment for a in call.attempts] == ["east", "west"]
    assert call.calls == 2 and call.upstream_ms == 12.0
    assert (call.cache_status, call.cache_similarity) == ("verify-agree", 0.93)
    assert not call.cache_hit
    assert call.guard == {"action": "flag", "ms": 1.0}
    headers = call.headers()
    assert headers["x-propylon-route"] == "east=upstream_error, west=ok"
    assert headers["x-propylon-guard"] == "flag; score=0.500"
    assert headers["x-ratelimit-remaining-requests"] == "9"
    assert headers["x-propylon-cache"] == "verify-agree"


def test_the_outcome_is_made_once_frozen_and_holds_the_one_spend() -> None:
    call = reported_call()
    assert call.outcome is None and call.spend is None  # still running
    outcome = outcome_of(call, PRICES)
    assert outcome_of(call, PRICES) is outcome
    assert spend_of(call, PRICES) is outcome.spend is call.spend
    assert outcome.spend.cost_usd == pytest.approx(2.0)  # $1 in + $1 out
    assert outcome.deployment == "west" and outcome.calls == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(outcome, "deployment", "east")  # noqa: B010
    with pytest.raises(TypeError):
        cast(dict[str, Any], outcome.guard)["action"] = "pass"


def test_a_fact_reported_after_the_outcome_is_left_out_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    call = reported_call()
    outcome = outcome_of(call, PRICES)
    with caplog.at_level(logging.WARNING):
        call.report(UsageReported({"prompt_tokens": 1, "completion_tokens": 1}))
    assert "left out" in caplog.text
    assert call.usage == USAGE and outcome.usage == USAGE
    assert call.outcome is outcome


def test_a_cache_hit_spends_nothing_and_keeps_what_it_saved() -> None:
    call = CallInfo()
    call.report(Routed("gpt-test", "gpt-test"), CacheVerdict("hit-exact"), UsageReported(USAGE))
    spend = outcome_of(call, PRICES).spend
    assert (spend.prompt_tokens, spend.completion_tokens, spend.cost_usd) == (0, 0, 0.0)
    assert spend.saved_usd == pytest.approx(2.0)


def test_a_read_while_the_call_runs_sees_the_facts_reported_since() -> None:
    call = CallInfo()
    call.report(CacheVerdict("miss"))
    assert call.headers()["x-propylon-cache"] == "miss"  # a stream's headers, sent early
    call.report(ResponseHeaders({"x-ratelimit-remaining-tokens": "90"}), CacheVerdict("bypass"))
    assert call.headers()["x-propylon-cache"] == "bypass"
    assert call.headers()["x-ratelimit-remaining-tokens"] == "90"
