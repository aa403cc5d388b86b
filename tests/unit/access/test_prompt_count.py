"""The limits layer counts a prompt's tokens only when a TPM limit or a budget needs them (a
long prompt costs tenths of a millisecond); it settles with the call's one ``Spend``."""

from __future__ import annotations

from typing import Any, cast

import pytest

from propylon.access.budgets import Budget
from propylon.access.directory import KeyDirectory
from propylon.access.keys import KeyRecord
from propylon.access.limited import AccessPolicy, LimitsLayer
from propylon.access.limits import Limits, MemoryRateLimiter
from propylon.access.store import AccessStore
from propylon.access.usage import UsageRecorder
from propylon.gateway.call import CallInfo, UsageReported
from propylon.gateway.protocol import Embeddings
from propylon.tokens import TokenCounter
from tests.unit.access.fakes import Directory, Store
from tests.unit.access.fakes import key_record as record

USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}


class CountingCounter(TokenCounter):
    def __init__(self) -> None:
        self.prompts = 0

    def count_messages(self, *args: Any, **kwargs: Any) -> int:
        self.prompts += 1
        return super().count_messages(*args, **kwargs)


class Upstream:
    def __init__(self, usage: dict[str, int] | None) -> None:
        self.usage = usage

    async def complete(self, request: dict[str, Any], call: CallInfo | None = None) -> Any:
        answer: dict[str, Any] = {"choices": [{"message": {"content": "four words of answer"}}]}
        if self.usage is not None:
            answer["usage"] = self.usage
            if call is not None:
                call.report(UsageReported(self.usage))  # as the gateway records it
        return answer

    async def stream(self, request: dict[str, Any], call: CallInfo | None = None) -> Any:
        raise NotImplementedError

    async def embed(self, texts: list[str], request: Any = None, call: Any = None) -> Embeddings:
        return Embeddings(vectors=[[0.0]] * len(texts), prompt_tokens=len(texts))


def layer(key: KeyRecord, usage: dict[str, int] | None) -> tuple[LimitsLayer, CountingCounter]:
    counter = CountingCounter()
    store = cast(AccessStore, Store())
    upstream = Upstream(usage)
    return (
        LimitsLayer(
            upstream,
            upstream,
            directory=cast(KeyDirectory, Directory(key)),
            store=store,
            usage=UsageRecorder(store),
            limiter=MemoryRateLimiter(),
            counter=counter,
            resolve=lambda name, kind: name,
            policy=AccessPolicy(),
        ),
        counter,
    )


def chat_call(key: KeyRecord) -> CallInfo:
    return CallInfo(principal=key.principal())


REQUEST = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello " * 500}]}


async def test_no_token_limit_no_budget_and_usage_given_nothing_is_counted() -> None:
    key = record(limits=Limits(rpm=100))
    limited, counter = layer(key, USAGE)
    await limited.complete(REQUEST, chat_call(key))
    assert counter.prompts == 0


@pytest.mark.parametrize(
    "key",
    [record(limits=Limits(tpm=100_000)), record(budget=Budget(tokens=1_000_000))],
    ids=["tpm", "budget"],
)
async def test_a_token_limit_or_a_budget_counts_the_prompt_before_the_call(
    key: KeyRecord,
) -> None:
    limited, counter = layer(key, USAGE)
    await limited.complete(REQUEST, chat_call(key))
    assert counter.prompts == 1


async def test_settling_reads_the_calls_spend_and_counts_nothing_more() -> None:
    key = record()
    limited, counter = layer(key, USAGE)
    call = chat_call(key)
    await limited.complete(REQUEST, call)
    assert call.spend is not None and call.spend.charged_tokens == 10
    assert counter.prompts == 0
    assert limited._usage.pending(key)[0] == 10  # the per-key tally: the same figure
