"""The directions of translation that serve clients of other APIs: Anthropic Messages and
legacy completions to and from chat, and the chat chunks told as Anthropic events."""

from __future__ import annotations

from typing import Any

import pytest

from propylon.errors import InvalidRequest, UpstreamStreamInterrupted
from propylon.gateway.protocol import JSONObject
from propylon.gateway.providers import text_completions
from propylon.gateway.providers.anthropic_translation import (
    MessageEvents,
    anthropic_error,
    anthropic_message,
    chat_request,
    messages_request,
)
from tests.support.chunk_streams import ChunkStream


def test_messages_body_becomes_a_chat_request_with_tool_results_as_tool_messages() -> None:
    request = chat_request(
        {
            "model": "m",
            "max_tokens": 50,
            "system": [{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
            "stop_sequences": ["END"],
            "metadata": {"user_id": "u-1"},
            "tool_choice": {"type": "any", "disable_parallel_tool_use": True},
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "Weather?"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "hm", "signature": "s"},
                        {"type": "text", "text": "Checking."},
                        {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": "boom",
                            "is_error": True,
                        },
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": "AAA"},
                        },
                    ],
                },
            ],
        }
    )
    assert request["messages"][0] == {"role": "system", "content": "Be brief.\n\nBe kind."}
    assert request["messages"][2] == {
        "role": "assistant",
        "content": "Checking.",
        "tool_calls": [
            {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a":1}'}}
        ],
    }
    assert request["messages"][3] == {
        "role": "tool",
        "tool_call_id": "t1",
        "content": "Error: boom",
    }
    assert request["messages"][4]["content"][0]["image_url"]["url"] == "data:image/png;base64,AAA"
    assert request["stop"] == ["END"]
    assert request["user"] == "u-1"
    assert request["tool_choice"] == "required"
    assert request["parallel_tool_calls"] is False
    assert request["tools"][0]["function"]["parameters"] == {"type": "object"}


def test_a_round_trip_through_chat_keeps_what_anthropic_understands() -> None:
    body: JSONObject = {
        "model": "claude",
        "max_tokens": 64,
        "system": "Be brief.",
        "stop_sequences": ["END"],
        "messages": [{"role": "user", "content": "Hi"}],
        "tools": [{"name": "f", "description": "d", "input_schema": {"type": "object"}}],
        "tool_choice": {"type": "tool", "name": "f"},
    }
    again = messages_request(chat_request(body), "claude", stream=False)
    assert again["system"] == "Be brief."
    assert again["max_tokens"] == 64
    assert again["stop_sequences"] == ["END"]
    assert again["tools"] == body["tools"]
    assert again["tool_choice"] == {"type": "tool", "name": "f"}
    assert again["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"max_tokens": 5, "messages": []}, "model"),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        (
            {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]},
            "messages.0",
        ),
        ({"model": "m", "max_tokens": 5, "messages": [], "system": 5}, "system"),
        (
            {
                "model": "m",
                "max_tokens": 5,
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "web_search_20250305", "name": "w"}],
            },
            "tools.0",
        ),
    ],
)
def test_bad_messages_bodies_name_the_field(body: JSONObject, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        chat_request(body)
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("turns", "param", "wording"),
    [
        (
            [{"role": "user", "content": [{"type": "text", "text": 5}]}],
            "messages.0.content.0.text",
            "must be a string",
        ),
        ([{"role": "user", "content": []}], "messages.0.content", "must not be empty"),
        ([{"role": "user", "content": ""}], "messages.0.content", "must not be empty"),
        (
            [{"role": "assistant", "content": []}, {"role": "user", "content": "x"}],
            "messages.0.content",
            "must not be empty",
        ),
    ],
)
def test_bad_turns_say_what_is_wrong_with_them(turns: Any, param: str, wording: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        chat_request({"model": "m", "max_tokens": 5, "messages": turns})
    assert caught.value.param == param
    assert wording in str(caught.value)


def test_only_a_final_assistant_turn_may_be_empty() -> None:
    turns = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": []}]
    request = chat_request({"model": "m", "max_tokens": 5, "messages": turns})
    assert request["messages"] == [{"role": "user", "content": "Hi"}]


def test_a_completion_becomes_an_anthropic_message() -> None:
    message = anthropic_message(
        {
            "choices": [
                {
                    "message": {
                        "content": "Let me look.",
                        "tool_calls": [
                            {
                                "id": "c1",
                                "function": {"name": "f", "arguments": '{"city": "Paris"}'},
                            }
                        ],
                    },
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {
                "prompt_tokens": 10,
                "completion_tokens": 4,
                "prompt_tokens_details": {"cached_tokens": 6},
            },
        },
        message_id="msg_1",
        model="m",
    )
    assert message["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "c1", "name": "f", "input": {"city": "Paris"}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert message["usage"] == {"input_tokens": 4, "cache_read_input_tokens": 6, "output_tokens": 4}


def test_errors_take_anthropics_types() -> None:
    assert anthropic_error(InvalidRequest("bad"))["error"] == {
        "type": "invalid_request_error",
        "message": "bad",
    }
    assert anthropic_error(UpstreamStreamInterrupted("cut"))["error"]["type"] == "api_error"


def _chunk(delta: JSONObject, finish: str | None = None) -> JSONObject:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


async def test_chat_chunks_become_anthropic_events_text_then_tool() -> None:
    stream = ChunkStream(
        [
            _chunk({"role": "assistant", "content": ""}),
            _chunk({"content": "Hi"}),
            _chunk(
                {
                    "tool_calls": [
                        {"index": 0, "id": "c1", "function": {"name": "f", "arguments": ""}}
                    ]
                }
            ),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"a":'}}]}),
            _chunk({"tool_calls": [{"index": 0, "function": {"arguments": "1}"}}]}),
            _chunk({}, "tool_calls"),
            {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}},
        ]
    )
    events = [event async for event in MessageEvents("msg_1", "m").events(stream)]
    kinds = [event["type"] for event in events]
    assert kinds == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[4]["content_block"] == {"type": "tool_use", "id": "c1", "name": "f", "input": {}}
    assert events[8]["delta"]["stop_reason"] == "tool_use"
    assert events[8]["usage"]["output_tokens"] == 2
    assert stream.closed


async def test_a_stream_failing_midway_ends_with_an_error_event() -> None:
    stream = ChunkStream([_chunk({"content": "Hi"})], fail=True)
    events = [event async for event in MessageEvents("msg_1", "m").events(stream)]
    assert events[-1] == {"type": "error", "error": {"type": "api_error", "message": "cut"}}
    assert stream.closed


def test_legacy_fields_ride_the_extension_and_reach_the_legacy_body_again() -> None:
    request = text_completions.chat_request(
        {"model": "m", "prompt": ["Once"], "max_tokens": 3, "echo": True, "logprobs": 2}
    )
    assert request["messages"] == [{"role": "user", "content": "Once"}]
    assert "echo" not in request
    body = text_completions.completions_body({**request, "stream": True}, "upstream")
    assert body == {
        "model": "upstream",
        "prompt": "Once",
        "max_tokens": 3,
        "echo": True,
        "logprobs": 2,
        "stream": True,
    }


def test_legacy_answers_survive_the_round_trip_through_chat() -> None:
    answer: JSONObject = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "m",
        "choices": [
            {
                "index": 0,
                "text": " upon",
                "logprobs": {"tokens": [" upon"]},
                "finish_reason": "length",
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    assert (
        text_completions.text_completion(text_completions.chat_completion(answer, "up")) == answer
    )
