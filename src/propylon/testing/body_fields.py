"""Reading fields of a JSON request body, rejecting what the real providers reject.

A translator that sends a malformed field should fail against the fake as it would in
production, with a 400 naming the parameter, not pass by the fake's leniency.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from propylon.testing.wire_error import invalid_request


def required_str(body: Mapping[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise invalid_request(f"{name}: Field required (a non-empty string)", param=name)
    return value


def required_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``messages``: a non-empty list of objects each with a ``role``."""
    value = body.get("messages")
    if not isinstance(value, list) or not value:
        raise invalid_request("messages: Field required (a non-empty list)", param="messages")
    for index, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise invalid_request(
                f"messages.{index}: an object with a role is required", param="messages"
            )
    return value


def optional_positive_int(body: Mapping[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise invalid_request(f"{name}: must be an integer >= 1", param=name)
    return value


def openai_streaming(body: Mapping[str, Any]) -> tuple[bool, bool]:
    """``stream`` and ``stream_options.include_usage``; options without ``stream`` are an
    error, as OpenAI says."""
    stream = body.get("stream") is True
    options = body.get("stream_options")
    if options is not None and not stream:
        raise invalid_request(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
        )
    return stream, isinstance(options, dict) and options.get("include_usage") is True


def string_list(body: Mapping[str, Any], name: str) -> list[str]:
    """A field that may be absent, one string, or a list of strings (``stop``)."""
    value = body.get(name)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    raise invalid_request(f"{name}: must be a string or a list of strings", param=name)


def last_user_content(messages: list[dict[str, Any]]) -> object:
    """The content the fake echoes: the last user message's, else the last message's."""
    for message in reversed(messages):
        if message["role"] == "user":
            return message.get("content")
    return messages[-1].get("content")
