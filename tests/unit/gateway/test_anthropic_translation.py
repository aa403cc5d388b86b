"""OpenAI chat requests to Anthropic Messages bodies and back, streams included; no network."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from propylon.errors import InvalidRequest, UpstreamError, UpstreamStreamInterrupted
from propylon.gateway.protocol import JSONObject, native_answer
from propylon.gateway.providers.anthropic_translation import (
    DEFAULT_MAX_TOKENS,
    chat_completion,
    completion_chunks,
    messages_request,
    native_chunks,
)
from propylon.gateway.usage import chunk_texts

MODEL = "claude-test"
USER = {"role": "user", "content": "hello"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def translate(**request: Any) -> JSONObject:
    request.setdefault("messages", [USER])
    return messages_request(request, MODEL, stream=False)


def call(call_id: str, arguments: str) -> JSONObject:
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": "weather", "arguments": arguments},
    }


# --- requests -----------------------------------------------------------------------------


def test_system_and_developer_messages_become_the_top_level_system_prompt() -> None:
    body = translate(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            USER,
        ]
    )
    assert body["system"] == "Be brief.\n\nAnswer in French."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]
    assert body["model"] == MODEL


def test_max_tokens_defaults_when_absent_and_prefers_max_completion_tokens() -> None:
    assert translate()["max_tokens"] == DEFAULT_MAX_TOKENS
    assert translate(max_tokens=50)["max_tokens"] == 50
    assert translate(max_tokens=50, max_completion_tokens=70)["max_tokens"] == 70


def test_consecutive_messages_of_one_role_are_merged() -> None:
    body = translate(
        messages=[USER, {"role": "user", "content": [{"type": "text", "text": "again"}]}]
    )
    assert body["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": "again"}],
        }
    ]


def test_image_parts_become_base64_or_url_image_blocks() -> None:
    parts = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    body = translate(messages=[{"role": "user", "content": parts}])
    assert body["messages"][0]["content"] == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
        },
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]


@pytest.mark.parametrize(
    "part",
    [
        {"type": "image_url", "image_url": {"url": "data:image/png,not-base64"}},
        {"type": "image_url", "image_url": {"url": "ftp://example.com/cat.jpg"}},
        {"type": "input_audio", "input_audio": {"data": "...", "format": "wav"}},
    ],
)
def test_content_parts_anthropic_cannot_take_are_rejected(part: JSONObject) -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate(messages=[{"role": "user", "content": [part]}])
    assert caught.value.param == "messages[0].content[0]"


def test_tool_calls_and_their_results_round_trip_as_tool_use_and_tool_result() -> None:
    body = translate(
        messages=[
            USER,
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [call("call_1", '{"city":"Oslo"}')],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "-3 C"},
            {"role": "user", "content": "and tomorrow?"},
        ],
        tools=[WEATHER_TOOL],
    )
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}}
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "-3 C"},
                {"type": "text", "text": "and tomorrow?"},
            ],
        },
    ]


def test_empty_tool_arguments_mean_no_input() -> None:
    body = translate(messages=[USER, {"role": "assistant", "tool_calls": [call("c", "")]}])
    assert body["messages"][1]["content"][0]["input"] == {}


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_tool_arguments_that_are_not_a_json_object_are_rejected(arguments: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate(messages=[USER, {"role": "assistant", "tool_calls": [call("c", arguments)]}])
    assert caught.value.param == "messages[1].tool_calls[0].function.arguments"


def test_tool_ids_are_made_safe_for_anthropic_on_both_sides() -> None:
    body = translate(
        messages=[
            USER,
            {"role": "assistant", "tool_calls": [call("call.1:x", "{}")]},
            {"role": "tool", "tool_call_id": "call.1:x", "content": "ok"},
        ]
    )
    assert body["messages"][1]["content"][0]["id"] == "call_1_x"
    assert body["messages"][2]["content"][0]["tool_use_id"] == "call_1_x"


def test_function_tools_become_anthropic_tools() -> None:
    body = translate(tools=[WEATHER_TOOL])
    assert body["tools"] == [
        {
            "name": "weather",
            "description": "Weather in a city",
            "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
        }
    ]
    assert "tool_choice" not in body


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        (
            {"type": "function", "function": {"name": "weather"}},
            {"type": "tool", "name": "weather"},
        ),
    ],
)
def test_tool_choice_maps_to_anthropic_tool_choice(choice: object, expected: JSONObject) -> None:
    assert translate(tools=[WEATHER_TOOL], tool_choice=choice)["tool_choice"] == expected


def test_parallel_tool_calls_false_disables_parallel_tool_use() -> None:
    body = translate(tools=[WEATHER_TOOL], parallel_tool_calls=False)
    assert body["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


@pytest.mark.parametrize(("openai", "anthropic"), [(0.3, 0.3), (1.0, 1.0), (1.7, 1.0)])
def test_temperature_is_clamped_to_anthropics_range(openai: float, anthropic: float) -> None:
    assert translate(temperature=openai)["temperature"] == anthropic


def test_sampling_stop_and_user_fields_are_renamed() -> None:
    body = translate(top_p=0.9, stop="END", user="u-42")
    assert body["top_p"] == 0.9
    assert body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-42"}
    assert translate(stop=["a", "b"])["stop_sequences"] == ["a", "b"]
    assert "top_p" not in translate(temperature=0.5, top_p=1)


def test_stream_flag_is_set_only_for_streams() -> None:
    assert "stream" not in translate()
    assert messages_request({"messages": [USER]}, MODEL, stream=True)["stream"] is True


@pytest.mark.parametrize(
    ("field", "request_fields"),
    [
        ("n", {"n": 2}),
        ("tool_choice", {"tool_choice": "bogus"}),
        ("tool_choice", {"tool_choice": "bogus", "tools": [WEATHER_TOOL]}),
        ("stop", {"stop": 5}),
        ("stop", {"stop": ["a", 1]}),
        ("functions", {"functions": [{"name": "f", "parameters": {}}]}),
        ("messages", {"messages": [{"role": "system", "content": "only a system prompt"}]}),
    ],
)
def test_requests_anthropic_cannot_serve_are_rejected_before_sending(
    field: str, request_fields: JSONObject
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        translate(**request_fields)
    assert caught.value.param == field


# --- responses ----------------------------------------------------------------------------


def anthropic_message(content: list[JSONObject], stop_reason: str, **usage: int) -> JSONObject:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-upstream",
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5, **usage},
    }


def test_text_message_becomes_a_chat_completion_with_cached_tokens_in_usage() -> None:
    message = anthropic_message(
        [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}],
        "end_turn",
        cache_read_input_tokens=100,
        cache_creation_input_tokens=7,
    )
    completion = chat_completion(message, created=123, name="anthropic/test")
    assert completion == {
        "id": "chatcmpl-msg_1",
        "object": "chat.completion",
        "created": 123,
        "model": "claude-upstream",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there"},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 117,
            "completion_tokens": 5,
            "total_tokens": 122,
            "prompt_tokens_details": {"cached_tokens": 100},
        },
    }


def test_tool_use_blocks_become_tool_calls_with_json_arguments() -> None:
    block = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}
    completion = chat_completion(anthropic_message([block], "tool_use"), created=0, name="a")
    choice = completion["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert choice["message"]["tool_calls"] == [
        {
            "id": "toolu_1",
            "type": "function",
            "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
        }
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length")],
)
def test_stop_reasons_map_to_finish_reasons(stop_reason: str, finish_reason: str) -> None:
    message = anthropic_message([{"type": "text", "text": "x"}], stop_reason)
    completion = chat_completion(message, created=0, name="a")
    assert completion["choices"][0]["finish_reason"] == finish_reason


def test_a_body_that_is_not_a_message_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        chat_completion({"type": "error", "error": {}}, created=0, name="a")


# --- streams ------------------------------------------------------------------------------


async def sse(*events: JSONObject) -> AsyncIterator[bytes]:
    """The lines of an Anthropic event stream, as the transport hands them over."""
    for event in events:
        yield b"event: " + str(event["type"]).encode()
        yield b"data: " + orjson.dumps(event)
        yield b""


async def collect(
    lines: AsyncIterator[bytes], *, include_usage: bool, into: list[JSONObject] | None = None
) -> list[JSONObject]:
    """The chunks translated from ``lines``, also appended to ``into`` as they come."""
    seen = [] if into is None else into
    chunks = completion_chunks(lines, "anthropic/test", include_usage=include_usage, created=7)
    async for chunk in chunks:
        seen.append(chunk)
    return seen


MESSAGE_START = {
    "type": "message_start",
    "message": {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude-upstream",
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 12, "output_tokens": 1, "cache_read_input_tokens": 3},
    },
}
PING = {"type": "ping"}
TEXT_EVENTS: list[JSONObject] = [
    MESSAGE_START,
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    PING,
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": " you"}},
    {"type": "content_block_stop", "index": 0},
    {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 2},
    },
    {"type": "message_stop"},
]


def deltas(chunks: list[JSONObject]) -> list[tuple[JSONObject, str | None]]:
    return [(c["choices"][0]["delta"], c["choices"][0]["finish_reason"]) for c in chunks]


async def test_text_stream_becomes_role_content_and_finish_chunks() -> None:
    chunks = await collect(sse(*TEXT_EVENTS), include_usage=False)
    assert deltas(chunks) == [
        ({"role": "assistant", "content": ""}, None),
        ({"content": "Hi"}, None),
        ({"content": " you"}, None),
        ({}, "stop"),
    ]
    assert {c["id"] for c in chunks} == {"chatcmpl-msg_1"}
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}
    assert {c["model"] for c in chunks} == {"claude-upstream"}
    assert {c["created"] for c in chunks} == {7}


async def test_include_usage_adds_a_usage_chunk_with_no_choices() -> None:
    chunks = await collect(sse(*TEXT_EVENTS), include_usage=True)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": 15,
        "completion_tokens": 2,
        "total_tokens": 17,
        "prompt_tokens_details": {"cached_tokens": 3},
    }


async def test_tool_use_stream_becomes_indexed_tool_call_deltas() -> None:
    tool_block = {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}
    events: list[JSONObject] = [
        MESSAGE_START,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Ok"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": tool_block},
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city":'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '"Oslo"}'},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use"},
            "usage": {"output_tokens": 9},
        },
        {"type": "message_stop"},
    ]
    chunks = await collect(sse(*events), include_usage=False)
    assert deltas(chunks)[1:] == [
        ({"content": "Ok"}, None),
        (
            {
                "tool_calls": [
                    {
                        "index": 0,
                        "id": "toolu_1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": ""},
                    }
                ]
            },
            None,
        ),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}, None),
        ({"tool_calls": [{"index": 0, "function": {"arguments": '"Oslo"}'}}]}, None),
        ({}, "tool_calls"),
    ]


async def test_error_event_interrupts_the_stream_with_anthropics_message() -> None:
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    seen: list[JSONObject] = []
    with pytest.raises(UpstreamStreamInterrupted, match="Overloaded"):
        await collect(sse(*TEXT_EVENTS[:4], error), include_usage=False, into=seen)
    assert deltas(seen) == [({"role": "assistant", "content": ""}, None), ({"content": "Hi"}, None)]


async def test_a_body_ending_before_message_stop_interrupts_the_stream() -> None:
    with pytest.raises(UpstreamStreamInterrupted, match="before it finished"):
        await collect(sse(*TEXT_EVENTS[:-1]), include_usage=True)


async def test_an_unreadable_event_interrupts_the_stream() -> None:
    async def lines() -> AsyncIterator[bytes]:
        yield b"event: message_start"
        yield b"data: {not json"
        yield b""

    with pytest.raises(UpstreamStreamInterrupted, match="unreadable"):
        await collect(lines(), include_usage=False)


async def test_a_passthrough_stream_carries_every_event_on_one_chunk() -> None:
    chunks = [chunk async for chunk in native_chunks(sse(*TEXT_EVENTS), "a", created=7)]
    assert [native_answer(c) for c in chunks] == TEXT_EVENTS, "each event, in order"
    ping = chunks[TEXT_EVENTS.index(PING)]
    assert ping["choices"] == [] and "usage" not in ping
    assert chunks[-1]["usage"]["completion_tokens"] == 2, "usage on message_stop, always"


async def test_thinking_streams_as_reasoning_content() -> None:
    thinking = {"type": "thinking", "thinking": "", "signature": ""}
    events: list[JSONObject] = [
        MESSAGE_START,
        {"type": "content_block_start", "index": 0, "content_block": thinking},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "thinking_delta", "thinking": "Let me see."},
        },
        {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta"}},
        {"type": "content_block_stop", "index": 0},
        *TEXT_EVENTS[1:],
    ]
    chunks = await collect(sse(*events), include_usage=False)
    assert deltas(chunks)[1] == ({"reasoning_content": "Let me see."}, None)
    assert "".join(answer_texts_of(chunks)) == "Let me see.Hi you"


def answer_texts_of(chunks: list[JSONObject]) -> list[str]:
    return [text for chunk in chunks for text in chunk_texts(chunk)]


def test_a_thinking_block_is_reasoning_content_of_the_completion() -> None:
    message = {
        "type": "message",
        "id": "msg_1",
        "model": "m",
        "content": [
            {"type": "thinking", "thinking": "Hmm.", "signature": "s"},
            {"type": "text", "text": "Yes."},
        ],
        "stop_reason": "end_turn",
        "usage": {"input_tokens": 3, "output_tokens": 5},
    }
    reply = chat_completion(message, created=0, name="a")["choices"][0]["message"]
    assert reply == {"role": "assistant", "content": "Yes.", "reasoning_content": "Hmm."}


def test_thinking_asked_in_chat_reaches_the_anthropic_body() -> None:
    asked = {"type": "enabled", "budget_tokens": 1024}
    assert translate(thinking=asked, max_tokens=2048)["thinking"] == asked
