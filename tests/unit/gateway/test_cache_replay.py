"""A streamed answer is rebuilt for the cache and replayed as the same chunks' content."""

from __future__ import annotations

from typing import Any

from propylon.gateway.cache.assembler import CompletionAssembler
from propylon.gateway.cache.replay import ReplayedStream


def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        **extra,
    }


LIVE = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hel"}),
    chunk({"content": "lo"}),
    chunk({"tool_calls": [{"index": 0, "id": "t1", "function": {"name": "f", "arguments": "{"}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": "}"}}]}),
    chunk({}, "tool_calls"),
    {**chunk({}), "choices": [], "usage": {"total_tokens": 3}},
]


def assembled() -> dict[str, Any] | None:
    assembler = CompletionAssembler()
    for c in LIVE:
        assembler.add(c)
    return assembler.completion()


def test_a_finished_stream_becomes_the_equivalent_completion() -> None:
    completion = assembled()
    assert completion is not None
    message = completion["choices"][0]["message"]
    assert message["content"] == "Hello"
    assert message["tool_calls"] == [
        {"id": "t1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]
    assert completion["choices"][0]["finish_reason"] == "tool_calls"
    assert completion["usage"] == {"total_tokens": 3}


def test_an_unfinished_or_logprob_stream_is_not_cached() -> None:
    unfinished = CompletionAssembler()
    unfinished.add(LIVE[1])
    assert unfinished.completion() is None
    logprobs = CompletionAssembler()
    logprobs.add({**LIVE[1], "choices": [{**LIVE[1]["choices"][0], "logprobs": {"content": []}}]})
    logprobs.add(LIVE[5])
    assert logprobs.completion() is None


def test_a_stream_ending_with_a_finish_reason_that_is_not_a_string_is_not_cached() -> None:
    """An upstream's odd ``finish_reason`` (a list) is not cacheable, and not a crash."""
    odd = CompletionAssembler()
    odd.add(LIVE[1])
    odd.add({**LIVE[5], "choices": [{**LIVE[5]["choices"][0], "finish_reason": ["stop"]}]})
    assert odd.completion() is None


async def test_the_replay_carries_content_tool_calls_finish_and_usage() -> None:
    completion = assembled()
    assert completion is not None
    chunks = [c async for c in ReplayedStream(completion, include_usage=True)]
    again = CompletionAssembler()
    for c in chunks:
        again.add(c)
    assert again.completion() == completion
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == {"total_tokens": 3}
    without = [c async for c in ReplayedStream(completion, include_usage=False)]
    assert all(c.get("usage") is None for c in without)
