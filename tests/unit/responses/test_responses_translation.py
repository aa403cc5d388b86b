"""Responses API bodies to chat requests and back, and chat chunks told as typed events."""

from __future__ import annotations

import pytest

from propylon.errors import InvalidRequest
from propylon.gateway.protocol import JSONObject
from propylon.responses.events import ResponseEvents
from propylon.responses.translation import (
    assistant_turn,
    chat_request,
    conversation,
    output_items,
    response_object,
)
from tests.support.chunk_streams import ChunkStream


def test_items_become_chat_turns_with_consecutive_calls_in_one_assistant_turn() -> None:
    body: JSONObject = {
        "model": "m",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {"type": "function_call", "call_id": "c2", "name": "g", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "one"},
            {"type": "function_call_output", "call_id": "c2", "output": "two"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "Look:"},
                    {"type": "input_image", "image_url": "https://x/y.png", "detail": "low"},
                ],
            },
        ],
    }
    turns = conversation(body)
    assert turns[0] == {"role": "user", "content": "Hi"}
    assert [call["id"] for call in turns[1]["tool_calls"]] == ["c1", "c2"]
    assert turns[2] == {"role": "tool", "tool_call_id": "c1", "content": "one"}
    assert turns[4]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "https://x/y.png", "detail": "low"},
    }


def test_settings_map_to_chat_fields() -> None:
    body: JSONObject = {
        "model": "m",
        "instructions": "Be brief.",
        "input": "Hi",
        "max_output_tokens": 9,
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "tool_choice": "required",
        "text": {"format": {"type": "json_object"}},
        "metadata": {"k": "v"},
    }
    request = chat_request(body, [{"role": "user", "content": "Before"}], conversation(body))
    assert request["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Before"},
        {"role": "user", "content": "Hi"},
    ]
    assert request["max_completion_tokens"] == 9
    assert request["tools"] == [
        {"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}
    ]
    assert request["tool_choice"] == "required"
    assert request["response_format"] == {"type": "json_object"}
    assert request["metadata"] == {"k": "v"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "m", "input": "x", "instructions": 3}, "instructions"),
        ({"model": "m", "input": "x", "tool_choice": {"type": "web_search"}}, "tool_choice"),
        ({"model": "m", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
        ({"model": "m", "input": [{"type": "function_call", "name": "f"}]}, "input[0]"),
    ],
)
def test_bad_bodies_name_the_field(body: JSONObject, param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        chat_request(body, [], conversation(body))
    assert caught.value.param == param


def test_a_truncated_answer_is_an_incomplete_response() -> None:
    output, finish = output_items(
        {"choices": [{"message": {"content": "Once"}, "finish_reason": "length"}]}
    )
    response = response_object(
        {"model": "m"},
        response_id="resp_1",
        created_at=1,
        status="completed",
        output=output,
        finish=finish,
    )
    assert response["status"] == "incomplete"
    assert response["incomplete_details"] == {"reason": "max_output_tokens"}
    assert assistant_turn(output) == {"role": "assistant", "content": "Once"}


async def _no_store(response: JSONObject) -> None:
    return None


async def test_events_are_numbered_and_the_final_response_holds_the_output() -> None:
    chunks: list[JSONObject] = [
        {"model": "up", "choices": [{"index": 0, "delta": {"content": "Hel"}}]},
        {"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]},
        {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 2}},
    ]
    stream = ChunkStream(chunks)
    events = [e async for e in ResponseEvents({"model": "m"}, "resp_1").events(stream, _no_store)]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    final = events[-1]["response"]
    assert events[-1]["type"] == "response.completed"
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert final["usage"]["total_tokens"] == 4
    assert final["model"] == "up"
    assert stream.closed


async def test_a_failure_midway_ends_with_response_failed() -> None:
    stream = ChunkStream([{"choices": [{"index": 0, "delta": {"content": "Hi"}}]}], fail=True)
    events = [e async for e in ResponseEvents({"model": "m"}, "resp_1").events(stream, _no_store)]
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"]["message"] == "cut"
    assert stream.closed
