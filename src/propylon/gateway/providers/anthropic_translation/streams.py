"""Streams, both ways: Anthropic's named events <-> ``chat.completion.chunk`` objects.

``completion_chunks`` reads an Anthropic deployment's event stream as chat chunks (the
provider's direction), ``native_chunks`` the same for a passthrough, keeping each event on
its chunk; ``MessageEvents`` tells a stream of chat chunks as Anthropic's events
(``POST /v1/messages`` served by any deployment): message_start, then per content block
content_block_start → content_block_delta… → content_block_stop, then message_delta (stop
reason, usage) and message_stop. A failure after the first event ends it with an ``error``
event, as Anthropic's own streams do.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from propylon.errors import PropylonError, UpstreamStreamInterrupted
from propylon.gateway.chunk_parts import chunk_parts, native_events
from propylon.gateway.citations import char_locations, extension_citations
from propylon.gateway.protocol import NATIVE, ChatStream, JSONObject, native_answer
from propylon.gateway.providers.anthropic_translation.answers import (
    anthropic_error,
    anthropic_usage,
    finish_reason,
    openai_usage,
    stop_reason,
)
from propylon.gateway.providers.transport import sse_objects

# --- Anthropic events -> OpenAI chunks ----------------------------------------------------


async def completion_chunks(
    lines: AsyncIterator[bytes],
    name: str,
    *,
    include_usage: bool,
    created: int,
    answer_tool: str | None = None,
) -> AsyncIterator[JSONObject]:
    """``chat.completion.chunk`` objects from the lines of an Anthropic event stream; the
    input of the tool ``answer_tool`` (``response_format``) streams as content, thinking
    as ``reasoning_content`` (as DeepSeek and vLLM stream reasoning).

    Ends after ``message_stop`` (with a usage-only chunk first when ``include_usage``);
    an ``error`` event, an unreadable event, or a body ending before ``message_stop``
    raises ``UpstreamStreamInterrupted``.
    """
    async for _, chunk in _read_events(lines, name, include_usage, created, answer_tool):
        if chunk is not None:
            yield chunk


async def native_chunks(
    lines: AsyncIterator[bytes], name: str, *, created: int
) -> AsyncIterator[JSONObject]:
    """The stream of a passthrough (``NativeModel.stream_native``): one chunk per Anthropic
    event, carrying the event itself (``protocol.native_answer``) and, for the request path's
    layers, what it means in chat's shape (an event chat has no word for, such as ``ping``,
    rides on a chunk without choices). Usage always comes, on the chunk of ``message_stop``."""
    async for event, chunk in _read_events(lines, name, True, created, None):
        carrier: JSONObject = (
            chunk if chunk is not None else {"object": "chat.completion.chunk", "choices": []}
        )
        carrier["propylon"] = {NATIVE: event}
        yield carrier


async def _read_events(
    lines: AsyncIterator[bytes],
    name: str,
    include_usage: bool,
    created: int,
    answer_tool: str | None,
) -> AsyncIterator[tuple[JSONObject, JSONObject | None]]:
    """Each event of the stream with the chunk it translates to, if any."""
    chunks: _ChunkStream | None = None
    async for event in sse_objects(lines, name):
        kind = event.get("type")
        if kind == "error":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            raise UpstreamStreamInterrupted(f"{name}: {message or 'error in the stream'}")
        if kind == "message_start":
            chunks = _ChunkStream.opened_by(event.get("message"), created, answer_tool)
            yield event, chunks.chunk({"role": "assistant", "content": ""})
        elif chunks is None:
            if kind != "ping":
                raise UpstreamStreamInterrupted(f"{name} sent {kind!r} before message_start")
            yield event, None
        elif kind == "message_stop":
            yield event, chunks.usage_chunk() if include_usage else None
            return
        else:
            yield event, chunks.translate(event)
    raise UpstreamStreamInterrupted(f"{name} closed the stream before it finished")


@dataclass(slots=True)
class _ChunkStream:
    """What a stream's chunks share, and the counts gathered for its usage chunk."""

    id: str
    model: object
    created: int
    usage: JSONObject
    answer_tool: str | None = None
    tool_indexes: dict[object, int] = field(default_factory=dict)
    answer_blocks: set[object] = field(default_factory=set)

    @classmethod
    def opened_by(cls, message: object, created: int, answer_tool: str | None) -> _ChunkStream:
        fields = message if isinstance(message, dict) else {}
        usage = fields.get("usage")
        return cls(
            id=f"chatcmpl-{fields.get('id', '')}",
            model=fields.get("model"),
            created=created,
            usage=dict(usage) if isinstance(usage, dict) else {},
            answer_tool=answer_tool,
        )

    def chunk(self, delta: JSONObject, finish: str | None = None) -> JSONObject:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    def usage_chunk(self) -> JSONObject:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [],
            "usage": openai_usage(self.usage),
        }

    def translate(self, event: JSONObject) -> JSONObject | None:
        """The chunk for one event between message_start and message_stop, if it has one."""
        kind = event.get("type")
        if kind == "content_block_start":
            block = event.get("content_block")
            if not isinstance(block, dict) or block.get("type") != "tool_use":
                return None  # text and thinking arrive in deltas; server tools stay upstream
            if self.answer_tool and block.get("name") == self.answer_tool:
                self.answer_blocks.add(event.get("index"))
                answer = orjson.dumps(block["input"]).decode() if block.get("input") else ""
                return self.chunk({"content": answer}) if answer else None
            index = self.tool_indexes.setdefault(event.get("index"), len(self.tool_indexes))
            arguments = orjson.dumps(block["input"]).decode() if block.get("input") else ""
            call = {
                "index": index,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": arguments},
            }
            return self.chunk({"tool_calls": [call]})
        if kind == "content_block_delta":
            delta = event.get("delta")
            if not isinstance(delta, dict):
                return None
            if delta.get("type") == "text_delta" and delta.get("text"):
                return self.chunk({"content": delta["text"]})
            if delta.get("type") == "thinking_delta" and delta.get("thinking"):
                return self.chunk({"reasoning_content": delta["thinking"]})
            if delta.get("type") == "input_json_delta" and event.get("index") in self.answer_blocks:
                partial = delta.get("partial_json")
                return self.chunk({"content": partial}) if partial else None
            tool_index = self.tool_indexes.get(event.get("index"))
            if delta.get("type") == "input_json_delta" and tool_index is not None:
                partial = delta.get("partial_json")
                if partial:
                    call = {"index": tool_index, "function": {"arguments": partial}}
                    return self.chunk({"tool_calls": [call]})
            return None
        if kind == "message_delta":
            usage = event.get("usage")
            if isinstance(usage, dict):  # cumulative counts
                self.usage.update({k: v for k, v in usage.items() if v is not None})
            delta = event.get("delta")
            stop_reason = delta.get("stop_reason") if isinstance(delta, dict) else None
            if self.answer_blocks and not self.tool_indexes:
                return self.chunk({}, "stop")  # the forced answer tool is the answer
            return self.chunk({}, finish_reason(stop_reason))
        return None  # ping, content_block_stop, and event types added later


# --- OpenAI chunks -> Anthropic events ----------------------------------------------------


@dataclass(slots=True)
class MessageEvents:
    """The Anthropic event stream of one message; ``events(stream)`` yields the events."""

    message_id: str
    model: str
    block: int = -1  # index of the open content block; -1: none yet
    block_kind: str | None = None
    tools: dict[int, int] = field(default_factory=dict)  # chat tool index -> block index
    finish: str | None = None
    usage: dict[str, Any] | None = None
    citations: list[JSONObject] = field(default_factory=list)  # a RAG answer's, at its end

    async def events(self, stream: ChatStream) -> AsyncGenerator[JSONObject, None]:
        """Every event of the message; closes ``stream`` whatever happens. A passthrough's
        stream (an Anthropic deployment's own events on its chunks) is relayed as it came,
        with the public model name in ``message_start``."""
        chunks = aiter(stream)
        try:
            first = await anext(chunks, None)
            if first is not None and native_answer(first) is not None:
                async for event in self._relayed(first, chunks):
                    yield event
                return
            yield {
                "type": "message_start",
                "message": {
                    "id": self.message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": self.model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 0, "output_tokens": 0},
                },
            }
            if first is not None:
                for event in self._translate(first):
                    yield event
            async for chunk in chunks:
                for event in self._translate(chunk):
                    yield event
            if self.block_kind == "text":
                for citation in char_locations(self.citations):
                    yield self._delta({"type": "citations_delta", "citation": citation})
            if self.block >= 0:
                yield {"type": "content_block_stop", "index": self.block}
            usage = anthropic_usage(self.usage)
            yield {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason(self.finish), "stop_sequence": None},
                "usage": usage,
            }
            yield {"type": "message_stop"}
        except PropylonError as exc:
            yield anthropic_error(exc)
        finally:
            await stream.aclose()

    async def _relayed(
        self, first: JSONObject, chunks: AsyncIterator[JSONObject]
    ) -> AsyncIterator[JSONObject]:
        async for event in native_events(first, chunks):
            message = event.get("message")
            if event.get("type") == "message_start" and isinstance(message, dict):
                event = {
                    **event,
                    "message": {**message, "id": self.message_id, "model": self.model},
                }
            yield event

    def _translate(self, chunk: JSONObject) -> list[JSONObject]:
        parts = chunk_parts(chunk)
        self.usage = parts.usage or self.usage
        self.finish = parts.finish or self.finish
        self.citations = extension_citations(chunk) or self.citations
        out: list[JSONObject] = []
        if parts.text:
            if self.block_kind != "text":
                out.extend(self._start({"type": "text", "text": ""}))
            out.append(self._delta({"type": "text_delta", "text": parts.text}))
        for call in parts.tool_calls:
            index = call.get("index", 0)
            function = call.get("function") if isinstance(call.get("function"), dict) else {}
            assert isinstance(function, dict)
            if index not in self.tools:
                block: JSONObject = {
                    "type": "tool_use",
                    "id": call.get("id") or f"toolu_{self.message_id}_{index}",
                    "name": function.get("name") or "",
                    "input": {},
                }
                out.extend(self._start(block))
                self.tools[index] = self.block
            arguments = function.get("arguments")
            if isinstance(arguments, str) and arguments and self.tools[index] == self.block:
                out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
        return out

    def _start(self, block: JSONObject) -> list[JSONObject]:
        out: list[JSONObject] = []
        if self.block >= 0:
            out.append({"type": "content_block_stop", "index": self.block})
        self.block += 1
        self.block_kind = block["type"]
        out.append({"type": "content_block_start", "index": self.block, "content_block": block})
        return out

    def _delta(self, delta: JSONObject) -> JSONObject:
        return {"type": "content_block_delta", "index": self.block, "delta": delta}
