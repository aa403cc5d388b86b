"""The shape an OpenAI-compatible upstream's chat answer must have to be passed on.

Checked once, where the answer enters (``OpenAIProvider``), so the layers above it (request
log, guard, cache, the Anthropic and Responses translators) can rely on it: ``choices`` a
list of objects; a message or delta an object whose ``content`` is a string or null (a
whole message's may also be a list of part objects) and whose
``tool_calls`` is a list of objects with an object ``function`` (its ``name`` and
``arguments`` strings or null). An answer carrying an ``error`` is the upstream's failure,
even with HTTP 200. A whole answer that fails is an ``UpstreamError`` (502, retryable); a
streamed chunk that fails breaks the stream (``UpstreamStreamInterrupted``), which the
gateway ends with its terminal error event. A legacy completion's ``text`` is checked the
same way where it is read as chat (``text_completions.chat_completion``, ``chat_chunk``).
"""

from __future__ import annotations

from typing import Any

from propylon.errors import UpstreamError, UpstreamStreamInterrupted
from propylon.gateway.protocol import JSONObject
from propylon.gateway.providers.transport import relayed_error


def checked_completion(body: JSONObject, name: str) -> JSONObject:
    """``body`` if it is a chat completion with at least one choice; else ``UpstreamError``."""
    _refuse_error(body, name)
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices:
        raise UpstreamError(f"{name} returned a body that is not a chat completion")
    for choice in choices:
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            raise UpstreamError(f"{name} returned a chat completion choice without a message")
        if not _is_message(choice["message"], whole=True):
            raise UpstreamError(f"{name} returned a chat completion message of the wrong shape")
    return body


def checked_response(body: JSONObject, name: str) -> JSONObject:
    """``body`` if it is a Responses API answer (``native_apis: [responses]``): no ``error``
    (it carries ``"error": null``) and a list ``output``; else ``UpstreamError``."""
    _refuse_error(body, name)
    if not isinstance(body.get("output"), list):
        raise UpstreamError(f"{name} returned a body that is not a response")
    return body


def _refuse_error(body: JSONObject, name: str) -> None:
    """An answer that carries an ``error`` is the upstream's failure, even with HTTP 200."""
    error = body.get("error")
    if error is not None:
        message, code = relayed_error(error, name, f"{name} answered with an error")
        raise UpstreamError(message, code=code)


def checked_chunk(chunk: JSONObject, name: str) -> JSONObject:
    """``chunk`` if it is a chat completion chunk (``choices`` may be absent or empty, as in
    the usage chunk); else ``UpstreamStreamInterrupted``."""
    error = chunk.get("error")
    if error is not None:
        message, _ = relayed_error(error, name, f"{name} sent an error in the stream")
        raise UpstreamStreamInterrupted(message)
    choices = chunk.get("choices")
    if choices is None:
        return chunk
    if type(choices) is not list:
        raise UpstreamStreamInterrupted(f"{name} sent a stream chunk that is not a chat chunk")
    for choice in choices:
        if type(choice) is not dict:
            raise UpstreamStreamInterrupted(
                f"{name} sent a stream chunk choice that is not an object"
            )
        delta = choice.get("delta")
        if delta is not None and not (type(delta) is dict and _is_message(delta, whole=False)):
            raise UpstreamStreamInterrupted(f"{name} sent a stream delta of the wrong shape")
    return chunk


def _is_message(message: JSONObject, *, whole: bool) -> bool:
    """Whether a message (``whole``) or delta has a text ``content`` and well-formed
    ``tool_calls``."""
    content = message.get("content")
    if content is not None and type(content) is not str and not (whole and _is_parts(content)):
        return False
    calls = message.get("tool_calls")
    if calls is None:
        return True
    return type(calls) is list and all(_is_tool_call(call, whole) for call in calls)


def _is_parts(content: Any) -> bool:
    """A whole message's content as a list of part objects (``{"type": "text", "text": …}``),
    as some OpenAI-compatible servers answer: the layers above read its text parts."""
    return type(content) is list and all(type(part) is dict for part in content)


def _is_tool_call(call: Any, whole: bool) -> bool:
    if type(call) is not dict:
        return False
    function = call.get("function")
    if function is None and not whole:  # a streamed call's delta may carry only its index
        return True
    return (
        type(function) is dict
        and _text_or_null(function.get("name"))
        and _text_or_null(function.get("arguments"))
    )


def _text_or_null(value: Any) -> bool:
    return value is None or type(value) is str
