"""Anthropic's Messages API, spoken to in OpenAI's shape.

Requests are translated to ``POST {base_url}/v1/messages`` and answers back to
``chat.completion`` objects by ``anthropic_translation``; this module adds the HTTP exchange
and the translation of Anthropic's named stream events into ``chat.completion.chunk``
objects. Anthropic's error bodies (``{"type": "error", "error": {"type", "message"}}``) are
read by the shared ``error_from_response``, so 429 becomes ``UpstreamRateLimited``, 529 and
5xx retryable ``UpstreamError``, and other 4xx ``UpstreamRejected`` with Anthropic's message.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import aiohttp
import orjson

from propylon.errors import UpstreamStreamInterrupted
from propylon.gateway.protocol import ChatStream, JSONObject
from propylon.gateway.providers.anthropic_translation import (
    chat_completion,
    finish_reason,
    messages_request,
    openai_usage,
    response_tool,
)
from propylon.gateway.providers.transport import (
    Timeouts,
    open_sse_stream,
    post_json,
)
from propylon.settings import DeploymentConfig

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


class AnthropicProvider:
    """Chat against one Anthropic deployment."""

    def __init__(self, deployment: DeploymentConfig, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._model = deployment.model or ""
        self.name = deployment.display_name
        # The API root, given with or without the version segment.
        base = (deployment.base_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1")
        self._url = f"{base}/v1/messages"
        self._headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION}
        key = deployment.api_key()
        if key is not None:
            self._headers["x-api-key"] = key.get_secret_value()
        self._timeouts = Timeouts.of(deployment)

    async def complete(self, request: JSONObject) -> JSONObject:
        message = await post_json(
            self._session,
            self._url,
            data=orjson.dumps(messages_request(request, self._model, stream=False)),
            headers=self._headers,
            timeouts=self._timeouts,
            name=self.name,
        )
        return chat_completion(
            message, created=int(time.time()), name=self.name, answer_tool=response_tool(request)
        )

    async def stream(self, request: JSONObject) -> ChatStream:
        data = orjson.dumps(messages_request(request, self._model, stream=True))
        options = request.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        created = int(time.time())
        answer_tool = response_tool(request)

        def parse(lines: AsyncIterator[bytes], name: str) -> AsyncIterator[JSONObject]:
            return completion_chunks(
                lines, name, include_usage=include_usage, created=created, answer_tool=answer_tool
            )

        return await open_sse_stream(
            self._session,
            self._url,
            data=data,
            headers=self._headers,
            timeouts=self._timeouts,
            name=self.name,
            parse=parse,
        )


async def completion_chunks(
    lines: AsyncIterator[bytes],
    name: str,
    *,
    include_usage: bool,
    created: int,
    answer_tool: str | None = None,
) -> AsyncIterator[JSONObject]:
    """``chat.completion.chunk`` objects from the lines of an Anthropic event stream; the
    input of the tool ``answer_tool`` (``response_format``) streams as content.

    Ends after ``message_stop`` (with a usage-only chunk first when ``include_usage``);
    an ``error`` event, an unreadable event, or a body ending before ``message_stop``
    raises ``UpstreamStreamInterrupted``.
    """
    chunks: _ChunkStream | None = None
    async for payload in _event_data(lines):
        try:
            event = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise UpstreamStreamInterrupted(f"{name} sent an unreadable stream event") from exc
        if not isinstance(event, dict):
            raise UpstreamStreamInterrupted(f"{name} sent a stream event that is not an object")
        kind = event.get("type")
        if kind == "error":
            error = event.get("error")
            message = error.get("message") if isinstance(error, dict) else None
            raise UpstreamStreamInterrupted(f"{name}: {message or 'error in the stream'}")
        if kind == "message_start":
            chunks = _ChunkStream.opened_by(event.get("message"), created, answer_tool)
            yield chunks.chunk({"role": "assistant", "content": ""})
        elif chunks is None:
            if kind != "ping":
                raise UpstreamStreamInterrupted(f"{name} sent {kind!r} before message_start")
        elif kind == "message_stop":
            if include_usage:
                yield chunks.usage_chunk()
            return
        elif (chunk := chunks.translate(event)) is not None:
            yield chunk
    raise UpstreamStreamInterrupted(f"{name} closed the stream before it finished")


async def _event_data(lines: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """The data of each server-sent event; the event name repeats the data's ``type``."""
    data: list[bytes] = []
    async for line in lines:
        if not line:
            if data:
                yield b"\n".join(data)
            data = []
        elif line.startswith(b"data:"):
            data.append(line[5:].removeprefix(b" "))
    if data:  # a last event without its blank line still counts
        yield b"\n".join(data)


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
                return None  # text arrives in deltas; thinking and server tools stay upstream
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
