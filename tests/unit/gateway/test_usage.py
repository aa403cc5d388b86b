"""The billed text of an answer: content, refusals, reasoning and tool calls; and how a stream
asks for usage without changing what the client asked."""

from __future__ import annotations

from propylon.gateway.usage import (
    answer_texts,
    asking_usage,
    chunk_texts,
    estimated_usage,
    wants_usage,
)
from propylon.tokens import TokenCounter

TOOL_CALL = {"function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}


def test_tool_calls_and_reasoning_are_billed_text() -> None:
    answer = {
        "choices": [
            {"message": {"content": None, "tool_calls": [TOOL_CALL]}},
            {"message": {"content": "Sunny.", "reasoning_content": "Check the forecast."}},
        ]
    }
    assert list(answer_texts(answer)) == [
        "get_weather",
        '{"city": "Paris"}',
        "Sunny.",
        "Check the forecast.",
    ]
    chunk = {"choices": [{"delta": {"tool_calls": [{"index": 0, **TOOL_CALL}]}}]}
    assert list(chunk_texts(chunk)) == ["get_weather", '{"city": "Paris"}']
    assert list(chunk_texts({"choices": [], "usage": {"completion_tokens": 3}})) == []


def test_an_estimate_counts_the_prompt_and_the_answer() -> None:
    request = {"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]}
    usage = estimated_usage(TokenCounter(), request, "gpt-4o", '{"city": "Paris"}')
    assert usage["prompt_tokens"] > 2
    assert usage["completion_tokens"] == TokenCounter().count_text('{"city": "Paris"}', "gpt-4o")
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


def test_usage_is_always_asked_upstream_and_the_clients_wish_remembered() -> None:
    plain = {"model": "m", "stream": True}
    assert asking_usage(plain)["stream_options"] == {"include_usage": True}
    assert not wants_usage(plain) and "stream_options" not in plain
    told = {"model": "m", "stream_options": {"include_usage": True, "other": 1}}
    assert wants_usage(told)
    assert asking_usage(told)["stream_options"] == {"include_usage": True, "other": 1}
