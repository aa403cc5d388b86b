"""Cheap checks on a chat request before anything is spent on it.

The body is a dict parsed once from the wire; these checks walk only the fields that must be
right for an upstream to accept the call, and name the offending ``param`` like OpenAI does.
"""

from __future__ import annotations

from typing import Any

from propylon.errors import InvalidRequest

MAX_CHOICES = 128  # OpenAI's bound on `n`; each answer may take `max_tokens`
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
_NUMBER_RANGES: dict[str, tuple[float, float]] = {
    "temperature": (0.0, 2.0),
    "top_p": (0.0, 1.0),
    "presence_penalty": (-2.0, 2.0),
    "frequency_penalty": (-2.0, 2.0),
}


def validate_chat_request(body: dict[str, Any], *, max_messages: int = 2048) -> None:
    """Raise ``InvalidRequest`` naming the first field that is wrong; the message count is
    checked before any message is looked at."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` is required and must be a non-empty string.", param="model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest(
            "`messages` is required and must be a non-empty array.", param="messages"
        )
    if len(messages) > max_messages:
        raise InvalidRequest(
            f"`messages` has {len(messages)} items; at most {max_messages} are accepted.",
            param="messages",
            code="array_above_max_length",
        )
    for index, message in enumerate(messages):
        _validate_message(index, message)
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("`stream` must be a boolean.", param="stream")
    for name in ("max_tokens", "max_completion_tokens", "n"):
        value = body.get(name)
        if value is not None and (not _is_int(value) or value < 1):
            raise InvalidRequest(f"`{name}` must be a positive integer.", param=name)
    choices = body.get("n")
    if choices is not None and choices > MAX_CHOICES:
        raise InvalidRequest(f"`n` must be at most {MAX_CHOICES}.", param="n")
    for name, (low, high) in _NUMBER_RANGES.items():
        value = body.get(name)
        if value is not None and (not _is_number(value) or not low <= value <= high):
            raise InvalidRequest(f"`{name}` must be a number in [{low}, {high}].", param=name)
    tools = body.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise InvalidRequest("`tools` must be an array.", param="tools")


def _validate_message(index: int, message: Any) -> None:
    where = f"messages[{index}]"
    if not isinstance(message, dict):
        raise InvalidRequest(f"`{where}` must be an object.", param=where)
    role = message.get("role")
    if not isinstance(role, str) or role not in _ROLES:
        raise InvalidRequest(
            f"`{where}.role` must be one of {', '.join(sorted(_ROLES))}.", param=f"{where}.role"
        )
    content = message.get("content")
    if content is None:
        if role == "assistant" and (message.get("tool_calls") or message.get("function_call")):
            return
        raise InvalidRequest(f"`{where}.content` is required.", param=f"{where}.content")
    if isinstance(content, list):
        for part_index, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                param = f"{where}.content[{part_index}]"
                raise InvalidRequest(f"`{param}` must be an object with a `type`.", param=param)
    elif not isinstance(content, str):
        raise InvalidRequest(
            f"`{where}.content` must be a string or an array of parts.", param=f"{where}.content"
        )
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise InvalidRequest(
            f"`{where}.tool_call_id` is required for tool messages.", param=f"{where}.tool_call_id"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def one_choice(request: dict[str, Any]) -> None:
    """A 400 naming ``n`` for a model that gives one answer per request (Anthropic's, the
    local extractive model, `rag/` answers), rather than fewer choices than asked."""
    choices = request.get("n")
    if choices is not None and choices != 1:
        raise InvalidRequest("This model returns one choice per request: `n` must be 1.", param="n")
