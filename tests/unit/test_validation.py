from __future__ import annotations

from typing import Any

import pytest

from propylon.errors import InvalidRequest
from propylon.gateway.validation import validate_chat_request

GOOD: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def test_a_well_formed_request_passes() -> None:
    validate_chat_request(GOOD)
    validate_chat_request(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "1"}]},
                {"role": "tool", "tool_call_id": "1", "content": "42"},
            ],
            "temperature": 0,
            "max_tokens": 10,
            "stream": True,
        }
    )


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"model": None}, "model"),
        ({"model": ""}, "model"),
        ({"messages": None}, "messages"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"messages": ["hi"]}, "messages[0]"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": ["user"], "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": {"user": 1}, "content": "x"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "user", "content": [5]}]}, "messages[0].content[0]"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"stream": "yes"}, "stream"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": True}, "max_tokens"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": "high"}, "top_p"),
        ({"tools": {}}, "tools"),
    ],
)
def test_malformed_requests_name_the_offending_param(patch: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate_chat_request({**GOOD, **patch})
    assert caught.value.param == param


def test_too_many_messages_are_refused_before_any_is_looked_at() -> None:
    messages: list[object] = [None] * 3  # malformed: a count past the limit wins
    with pytest.raises(InvalidRequest) as refused:
        validate_chat_request({"model": "m", "messages": messages}, max_messages=2)
    assert (refused.value.param, refused.value.code) == ("messages", "array_above_max_length")
