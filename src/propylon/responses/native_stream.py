"""A Responses upstream's own event stream, read for a passthrough (``native_apis:
[responses]``): one ``chat.completion.chunk`` per event, carrying the event itself
(``protocol.native_answer``) and what it means in chat's shape, so the request path's layers
(usage and the ledger, guard output checks, cache, request log) read it as they read any
stream, and ``/v1/responses`` relays the events as they came.

Text deltas become ``content``, function-call argument deltas ``tool_calls`` (indexed in the
order the calls were opened), reasoning deltas ``reasoning_content``, and
``response.completed`` (or ``incomplete``) the finish reason and usage. The stream ends after
that event; ``response.failed``, an ``error`` event or a body ending before the end raise
``UpstreamStreamInterrupted``. Events chat has no word for ride on chunks without choices.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from propylon.errors import UpstreamStreamInterrupted
from propylon.gateway.protocol import NATIVE, JSONObject
from propylon.gateway.providers.transport import sse_objects
from propylon.responses.translation import chat_usage

_REASONING = (
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
)
_ENDS = {"response.completed": "stop", "response.incomplete": "length"}


async def native_chunks(lines: AsyncIterator[bytes], name: str) -> AsyncIterator[JSONObject]:
    """The chunks of a Responses event stream, each with its event (see the module)."""
    reader = _Reader()
    async for event in sse_objects(lines, name):
        kind = event.get("type")
        if kind in ("error", "response.failed"):
            raise UpstreamStreamInterrupted(f"{name}: {_failure(event)}")
        chunk = reader.chunk(event)
        chunk["propylon"] = {NATIVE: event}
        yield chunk
        if kind in _ENDS:
            return
    raise UpstreamStreamInterrupted(f"{name} closed the stream before it finished")


def _failure(event: JSONObject) -> str:
    response = event.get("response")
    error = response.get("error") if isinstance(response, dict) else event
    message = error.get("message") if isinstance(error, dict) else None
    return str(message or "error in the stream")


@dataclass(slots=True)
class _Reader:
    """What the chunks of one stream share: the response's id and model, and the index of
    each function call by its item id."""

    id: object = None
    model: object = None
    calls: dict[object, int] = field(default_factory=dict)
    called: bool = False

    def chunk(self, event: JSONObject) -> JSONObject:
        kind = event.get("type")
        response = event.get("response")
        if isinstance(response, dict):
            self.id = response.get("id", self.id)
            self.model = response.get("model", self.model)
        if kind == "response.created":
            return self._chunk({"role": "assistant", "content": ""})
        if kind == "response.output_text.delta":
            return self._text("content", event.get("delta"))
        if kind == "response.refusal.delta":
            return self._text("refusal", event.get("delta"))
        if kind in _REASONING:
            return self._text("reasoning_content", event.get("delta"))
        if kind == "response.output_item.added":
            item = event.get("item")
            if isinstance(item, dict) and item.get("type") == "function_call":
                index = self.calls.setdefault(item.get("id"), len(self.calls))
                self.called = True
                call = {
                    "index": index,
                    "id": item.get("call_id"),
                    "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments", "")},
                }
                return self._chunk({"tool_calls": [call]})
        if kind == "response.function_call_arguments.delta":
            known = self.calls.get(event.get("item_id"))
            delta = event.get("delta")
            if known is not None and isinstance(delta, str) and delta:
                call = {"index": known, "function": {"arguments": delta}}
                return self._chunk({"tool_calls": [call]})
        if kind in _ENDS:
            finish = "tool_calls" if self.called and kind == "response.completed" else _ENDS[kind]
            chunk = self._chunk({}, finish)
            usage = chat_usage(response.get("usage") if isinstance(response, dict) else None)
            if usage is not None:
                chunk["usage"] = usage
            return chunk
        return self._chunk(None)

    def _text(self, field_name: str, delta: object) -> JSONObject:
        return self._chunk({field_name: delta} if isinstance(delta, str) and delta else None)

    def _chunk(self, delta: JSONObject | None, finish: str | None = None) -> JSONObject:
        chunk: JSONObject = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "model": self.model,
            "choices": [],
        }
        if delta is not None:
            chunk["choices"] = [{"index": 0, "delta": delta, "finish_reason": finish}]
        return chunk
