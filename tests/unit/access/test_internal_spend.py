"""Calls Propylon makes for a key (``origin: internal``) are tallied as their own series, and
count against the key's budget only when ``internal_counts_against_budget`` says so."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

import pytest

from propylon.access.budgets import Budget
from propylon.access.directory import KeyDirectory
from propylon.access.keys import KeyRecord
from propylon.access.limited import AccessPolicy, LimitsLayer
from propylon.access.limits import Limits, MemoryRateLimiter
from propylon.access.store import AccessStore
from propylon.access.usage import UsageRecorder
from propylon.errors import QuotaExceeded, RateLimited
from propylon.gateway.call import CallInfo, UsageReported
from propylon.tokens import TokenCounter
from tests.unit.access.fakes import Directory, Store, key_record

USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}
REQUEST = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
KEY = key_record(budget=Budget(period="day", tokens=25))


class Upstream:
    """Answers every call with 10 tokens of usage, reported as the gateway reports it."""

    async def complete(self, request: dict[str, Any], call: CallInfo | None = None) -> Any:
        if call is not None:
            call.report(UsageReported(USAGE))
        return {"choices": [{"message": {"content": "ok"}}], "usage": USAGE}

    async def stream(self, request: dict[str, Any], call: CallInfo | None = None) -> Any:
        raise NotImplementedError

    async def embed(self, texts: list[str], request: Any = None, call: Any = None) -> Any:
        raise NotImplementedError


def layer(internal_counts: bool, key: KeyRecord = KEY) -> tuple[LimitsLayer, UsageRecorder]:
    store = cast(AccessStore, Store())
    usage = UsageRecorder(store)
    upstream = Upstream()
    limited = LimitsLayer(
        upstream,
        upstream,
        directory=cast(KeyDirectory, Directory(key)),
        store=store,
        usage=usage,
        limiter=MemoryRateLimiter(),
        counter=TokenCounter(),
        resolve=lambda name, kind: name,
        policy=AccessPolicy(internal_counts_against_budget=internal_counts),
    )
    return limited, usage


def user() -> CallInfo:
    return CallInfo(principal=KEY.principal())


def internal() -> CallInfo:
    return CallInfo(principal=KEY.principal(), origin="internal", parent_id="req-1")


async def test_internal_spend_counts_against_the_budget_by_default() -> None:
    assert AccessPolicy().internal_counts_against_budget
    limited, usage = layer(internal_counts=True)
    await limited.complete(REQUEST, internal())  # a RAG summary made for the key: 10 tokens
    await limited.complete(REQUEST, user())  # 20 spent of 25
    with pytest.raises(QuotaExceeded, match="already spent or reserved"):
        await limited.complete(REQUEST, user())  # reserves ~13 more: over the budget
    assert usage.pending(KEY) == (20, 0.0, 20, 0.0)


async def test_internal_spend_can_be_left_out_of_the_budget_yet_still_tallied() -> None:
    limited, usage = layer(internal_counts=False)
    await limited.complete(REQUEST, internal())
    await limited.complete(REQUEST, user())  # 10 spent of 25 by the budget's count
    await limited.complete(REQUEST, user())  # admitted: 20 of 25
    assert usage.pending(KEY, internal=False)[0] == 20
    assert usage.pending(KEY, internal=True)[0] == 30, "the internal series is still recorded"


async def test_internal_calls_are_never_held_to_the_keys_rate_limits() -> None:
    limited, usage = layer(internal_counts=False, key=replace(KEY, limits=Limits(rpm=1)))
    await limited.complete(REQUEST, user())  # the one request this minute allows
    for _ in range(3):  # the summaries and embeddings made for it
        await limited.complete(REQUEST, internal())
    with pytest.raises(RateLimited):
        await limited.complete(REQUEST, user())
    assert usage.pending(KEY, internal=True)[0] == 40
