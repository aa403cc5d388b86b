"""A cached answer replayed to a streaming request as the chunks a live stream would send:
per choice a first chunk with the role and the whole content (and tool calls), then one with
its ``finish_reason``, then, when the client asked ``stream_options.include_usage``, the usage
chunk with no choices. The HTTP layer adds the SSE framing and ``[DONE]``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from propylon.gateway.protocol import JSONObject


class ReplayedStream:
    """A ``ChatStream`` over a cached ``chat.completion``."""

    def __init__(self, completion: JSONObject, *, include_usage: bool) -> None:
        self._completion = completion
        self._include_usage = include_usage

    def __aiter__(self) -> AsyncIterator[JSONObject]:
        return self._chunks()

    async def aclose(self) -> None:
        return None

    async def _chunks(self) -> AsyncIterator[JSONObject]:
        for chunk in replay_chunks(self._completion, include_usage=self._include_usage):
            yield chunk


def replay_chunks(completion: JSONObject, *, include_usage: bool) -> list[JSONObject]:
    head = {
        "id": completion.get("id", "chatcmpl-cached"),
        "object": "chat.completion.chunk",
        "created": completion.get("created", 0),
        "model": completion.get("model", ""),
    }
    if completion.get("system_fingerprint"):
        head["system_fingerprint"] = completion["system_fingerprint"]
    chunks: list[JSONObject] = []
    for choice in completion.get("choices") or ():
        index = choice.get("index", 0)
        message = choice.get("message") or {}
        delta: dict[str, Any] = {"role": message.get("role", "assistant")}
        if message.get("content") is not None:
            delta["content"] = message["content"]
        if message.get("refusal"):
            delta["refusal"] = message["refusal"]
        if message.get("tool_calls"):
            delta["tool_calls"] = [
                {"index": i, **call} for i, call in enumerate(message["tool_calls"])
            ]
        chunks.append({**head, "choices": [_choice(index, delta, None, choice.get("logprobs"))]})
        chunks.append({**head, "choices": [_choice(index, {}, choice.get("finish_reason"))]})
    if include_usage and completion.get("usage") is not None:
        chunks.append({**head, "choices": [], "usage": completion["usage"]})
    return chunks


def _choice(
    index: int, delta: JSONObject, finish_reason: str | None, logprobs: object = None
) -> JSONObject:
    """A chunk's choice; a cached answer's logprobs ride on its content chunk."""
    return {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}
