"""Fail fast when a request cannot fit the model's context window.

Counting tokens costs about 0.3 ms per 1,000 tokens, so it is skipped whenever a cheap bound
proves the request fits: no BPE token is shorter than one UTF-8 byte, so the body's size in bytes
bounds its token count from above. The characters of its strings are summed first (no copy):
four bytes per character at most proves small requests fit at once, and a request with more
characters than the window has more bytes too, so serialising it could not help: it goes
straight to the (bounded, see ``propylon.tokens``) count.
"""

from __future__ import annotations

from typing import Any

import orjson

from propylon.errors import ContextWindowExceeded
from propylon.settings import ModelConfig
from propylon.tokens import TokenCounter

# Per-message and reply-priming tokens of OpenAI's counting recipe, as a generous bound.
_FIXED_OVERHEAD = 8


class ContextWindowCheck:
    """Refuses a request whose prompt plus ``max_tokens`` exceeds ``context_window``."""

    def __init__(self, counter: TokenCounter) -> None:
        self._counter = counter

    def check(self, model: ModelConfig, request: dict[str, Any]) -> None:
        window = model.context_window
        if window is None:
            return
        wanted = request.get("max_completion_tokens") or request.get("max_tokens") or 0
        messages: list[dict[str, Any]] = request["messages"]
        tools = request.get("tools")
        room = window - wanted - 3 * len(messages) - _FIXED_OVERHEAD
        chars = _chars(messages) + _chars(tools)
        if 4 * chars <= room:
            return
        if chars <= room and _json_size(messages) + _json_size(tools) <= room:
            return
        upstream = model.deployments[0].model or model.name
        prompt = self._counter.count_messages(messages, upstream, tools)
        if prompt + wanted > window:
            raise ContextWindowExceeded(
                f"This request needs {prompt} prompt tokens plus {wanted} for the completion, "
                f"more than the {window} tokens `{model.name}` accepts. Shorten the prompt "
                "or lower the answer's limit (`max_tokens`; `max_output_tokens` on "
                "/v1/responses).",
                param="messages",
            )


def _chars(value: Any) -> int:
    """Characters in every string of ``value`` (keys included): a lower bound on its JSON
    size in bytes, and a quarter of an upper bound on the bytes of those strings. Iterative:
    client JSON may nest deeper than Python's recursion limit."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            total += len(item)
        elif isinstance(item, dict):
            total += sum(map(len, item))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif item is not None:
            total += 8  # numbers, booleans: a few bytes
    return total


def _json_size(value: Any) -> int:
    """Bytes of ``value`` as JSON; past orjson's nesting limit (deeper than it parses), a size
    that proves nothing, so the tokens are counted instead."""
    if not value:
        return 0
    try:
        return len(orjson.dumps(value))
    except TypeError:  # orjson.JSONEncodeError: "Recursion limit reached"
        return 1 << 62
