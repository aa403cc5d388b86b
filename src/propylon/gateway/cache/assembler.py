"""Rebuilds the ``chat.completion`` a stream delivered, so a streamed answer can be cached
and served later to streaming and non-streaming requests alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from propylon.gateway.protocol import JSONObject

CACHEABLE_FINISH = frozenset({"stop", "length", "tool_calls"})


def cacheable(finish_reason: object) -> bool:
    """A choice that ended this way may be cached (an upstream's odd value, say a list, not)."""
    return isinstance(finish_reason, str) and finish_reason in CACHEABLE_FINISH


@dataclass(slots=True)
class _Choice:
    role: str = "assistant"
    content: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    tool_calls: dict[int, dict[str, Any]] = field(default_factory=dict)
    finish_reason: str | None = None


class CompletionAssembler:
    """Feed it every chunk of a stream; ``completion()`` is the equivalent answer, or None
    when the stream carried something it cannot rebuild faithfully (logprobs, audio…) or did
    not finish cleanly."""

    def __init__(self) -> None:
        self._head: JSONObject = {}
        self._choices: dict[int, _Choice] = {}
        self._usage: JSONObject | None = None
        self._faithful = True

    def add(self, chunk: JSONObject) -> None:
        if not self._head:
            self._head = {
                k: chunk[k] for k in ("id", "created", "model", "system_fingerprint") if k in chunk
            }
        if chunk.get("usage"):
            self._usage = chunk["usage"]
        for raw in chunk.get("choices") or ():
            self._add_choice(raw)

    def _add_choice(self, raw: JSONObject) -> None:
        choice = self._choices.setdefault(int(raw.get("index", 0)), _Choice())
        if raw.get("logprobs"):
            self._faithful = False
        delta = raw.get("delta") or {}
        if set(delta) - {"role", "content", "refusal", "tool_calls"}:
            self._faithful = False
        if delta.get("role"):
            choice.role = delta["role"]
        if delta.get("content"):
            choice.content.append(delta["content"])
        if delta.get("refusal"):
            choice.refusal.append(delta["refusal"])
        for call in delta.get("tool_calls") or ():
            slot = choice.tool_calls.setdefault(
                int(call.get("index", 0)),
                {"id": None, "type": "function", "function": {"name": "", "arguments": ""}},
            )
            if call.get("id"):
                slot["id"] = call["id"]
            function = call.get("function") or {}
            slot["function"]["name"] += function.get("name") or ""
            slot["function"]["arguments"] += function.get("arguments") or ""
        if raw.get("finish_reason"):
            choice.finish_reason = raw["finish_reason"]

    def completion(self) -> JSONObject | None:
        if not self._faithful or not self._choices:
            return None
        if not all(cacheable(c.finish_reason) for c in self._choices.values()):
            return None
        choices = []
        for index, c in sorted(self._choices.items()):
            message: JSONObject = {
                "role": c.role,
                "content": "".join(c.content) if c.content or not c.tool_calls else None,
            }
            if c.refusal:
                message["refusal"] = "".join(c.refusal)
            if c.tool_calls:
                message["tool_calls"] = [c.tool_calls[i] for i in sorted(c.tool_calls)]
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": c.finish_reason,
                }
            )
        out: JSONObject = {**self._head, "object": "chat.completion", "choices": choices}
        if self._usage is not None:
            out["usage"] = self._usage
        return out
