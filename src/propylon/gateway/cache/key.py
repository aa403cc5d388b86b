"""Cache keys: a canonical hash of everything that changes a chat answer.

Two hashes come out of one request. ``exact`` covers the whole canonical request (resolved
model, messages, tools, tool_choice, response_format, every sampling parameter, seed, stop…)
plus the tenant and the model's version salt. ``scope`` covers the same minus the text of the
last user message: two requests in one scope differ only in how the question is worded, which
is the only difference the semantic cache may bridge.

Fields that change nothing in the answer (``stream``, ``stream_options``, ``user``,
``metadata``, ``store``, ``service_tier`` and Propylon's own ``propylon`` extension) are left
out, so a streamed request and a plain one share their entry.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from propylon.gateway.protocol import JSONObject, native_body

IGNORED_FIELDS = frozenset(
    {"model", "stream", "stream_options", "user", "metadata", "store", "service_tier", "propylon"}
)
# Fields of a native Messages or Responses body the chat request already carries (the
# question among them).
_TRANSLATED = frozenset(
    {"model", "messages", "system", "max_tokens", "temperature", "top_p", "stop_sequences"}
    | {"tools", "tool_choice", "metadata", "stream", "input", "instructions", "text"}
    | {"max_output_tokens", "store", "previous_response_id"}
)
_QUESTION_SLOT = "\x00question\x00"
# Characters of message text past which a key is hashed in a thread: serialising and hashing
# an 8 MB prompt (twice) took tens of ms; SHA-256 lets other threads run, the loop among them.
OFF_LOOP_CHARS = 256 * 1024


@dataclass(frozen=True, slots=True)
class CacheKey:
    """Where a request's answer is cached, and what the semantic cache may compare."""

    tenant_id: str
    model: str  # resolved public model name
    exact: str  # sha256 hex: the whole request, tenant and salt
    scope: str  # sha256 hex: the same without the last user message's text
    question: str | None  # the last user message's text; None: no semantic lookup


def cache_key(
    request: JSONObject, *, tenant_id: str, model: str, salt: str = "", semantic: bool = True
) -> CacheKey:
    """The key of ``request`` once its model is resolved to the public name ``model``.
    ``semantic=False`` (no semantic cache to ask): the exact key alone, no scope or question."""
    body = {k: _canonical(v) for k, v in request.items() if k not in IGNORED_FIELDS}
    native = native_body(request)
    if native is not None:  # a passthrough's fields chat cannot carry (``top_k``, thinking…)
        body["native"] = {k: _canonical(v) for k, v in native.items() if k not in _TRANSLATED}
    head = {"tenant": tenant_id, "model": model, "salt": salt}
    exact = _digest({**head, "request": body})
    question = last_question(request) if semantic else None
    if question is None:
        return CacheKey(tenant_id, model, exact, exact, None)
    messages = list(body["messages"])
    messages[-1] = {**messages[-1], "content": _QUESTION_SLOT}
    scope = _digest({**head, "request": {**body, "messages": messages}})
    return CacheKey(tenant_id, model, exact, scope, question)


async def cache_key_off_loop(
    request: JSONObject, *, tenant_id: str, model: str, salt: str = "", semantic: bool = True
) -> CacheKey:
    """``cache_key``, computed in a thread when the messages hold more than
    ``OFF_LOOP_CHARS`` characters of text, so a large prompt does not hold the event loop."""
    options: dict[str, Any] = {"tenant_id": tenant_id, "model": model, "salt": salt}
    if _message_chars(request) <= OFF_LOOP_CHARS:
        return cache_key(request, semantic=semantic, **options)
    return await asyncio.to_thread(cache_key, request, semantic=semantic, **options)


def _message_chars(request: JSONObject) -> int:
    """The characters of the strings in the messages (text, image URLs, tool arguments)."""
    return _chars(request.get("messages"), 0)


def _chars(value: Any, depth: int) -> int:
    if isinstance(value, str):
        return len(value)
    if depth > 8:  # deeper than any message part
        return 0
    if isinstance(value, dict):
        return sum(_chars(item, depth + 1) for item in value.values())
    if isinstance(value, list):
        return sum(_chars(item, depth + 1) for item in value)
    return 0


def last_question(request: JSONObject) -> str | None:
    """The text of the last message when it is a user message made of text only."""
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages or not isinstance(messages[-1], dict):
        return None
    last = messages[-1]
    if last.get("role") != "user":
        return None
    content = last.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content:
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                return None  # images, audio, files: no semantic match on the text alone
            text = part.get("text")
            if not isinstance(text, str):
                return None
            parts.append(text)
        return "\n".join(parts)
    return None


def _canonical(value: Any) -> Any:
    """Equal requests, equal bytes: integral floats become ints (``0.0`` and ``0`` are one
    temperature), those orjson can write (a ``seed`` of ``1e20`` stays a float: as an int it
    made the key fail, and the request go uncached); key order is fixed by the serializer."""
    if isinstance(value, float) and value.is_integer() and -(2**63) <= value < 2**63:
        return int(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_canonical(v) for v in value]
    return value


def _digest(value: object) -> str:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()
