"""Anthropic's Messages API wire format, plain and streamed, and its model list.

The fake rejects what Anthropic rejects and a careless translator would send: a missing
``anthropic-version`` header or ``max_tokens``. Streams carry the named events in
Anthropic's order: message_start, content_block_start, ping, content_block_delta…,
content_block_stop, message_delta, message_stop. With ``thinking`` enabled the answer opens
with a thinking block (``thinking_delta``s, then a ``signature_delta``), its tokens counted in
``output_tokens`` as Anthropic bills them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from propylon.testing import body_fields
from propylon.testing.completion import (
    Completion,
    Finish,
    compose_leak,
    compose_text,
    compose_thinking,
    compose_tool_call,
    count_tokens,
    scripted,
    text_of,
)
from propylon.testing.event_stream import EventStream
from propylon.testing.exchange import Exchange
from propylon.testing.wire_error import invalid_request

_STOP_REASON: dict[Finish, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "stop_sequence": "stop_sequence",
    "tool_calls": "tool_use",
}


async def messages(exchange: Exchange) -> web.StreamResponse:
    """``POST /v1/messages``."""
    if "anthropic-version" not in exchange.request.headers:
        raise invalid_request("anthropic-version: header is required")
    body = exchange.body
    model = body_fields.required_str(body, "model")
    turns = body_fields.required_messages(body)
    max_tokens = body_fields.optional_positive_int(body, "max_tokens")
    if max_tokens is None:
        raise invalid_request("max_tokens: Field required")
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        raise invalid_request("system: Input should be a string or a list of text blocks")
    completion = _answer(body, turns, max_tokens, exchange)
    thoughts = _thinking(body, max_tokens, text_of(body_fields.last_user_content(turns)))
    await exchange.pause(completion.delay_s)
    input_tokens = count_tokens(text_of(system), *(text_of(t.get("content")) for t in turns))
    reply = _Reply(model, input_tokens, thoughts)
    if body.get("stream") is not True:
        await exchange.pause(exchange.behaviour.non_stream_delay_s(completion.tokens))
        return exchange.json(reply.message(completion))
    events = await exchange.open_stream()
    await _stream(events, reply, completion)
    return await events.close()


async def list_models(exchange: Exchange) -> web.Response:
    """``GET /v1/models`` as Anthropic lists them (chosen by the ``anthropic-version`` header)."""
    names = exchange.behaviour.models
    return exchange.json(
        {
            "data": [
                {
                    "type": "model",
                    "id": name,
                    "display_name": name,
                    "created_at": "2025-01-01T00:00:00Z",
                }
                for name in names
            ],
            "has_more": False,
            "first_id": names[0] if names else None,
            "last_id": names[-1] if names else None,
        }
    )


def _thinking(body: Mapping[str, Any], max_tokens: int, prompt: str) -> tuple[str, ...]:
    """The thinking pieces when ``thinking`` is enabled (validated as Anthropic does)."""
    thinking = body.get("thinking")
    if thinking is None:
        return ()
    if not isinstance(thinking, dict) or thinking.get("type") not in ("enabled", "disabled"):
        raise invalid_request("thinking: must be {type: enabled, budget_tokens} or disabled")
    if thinking["type"] == "disabled":
        return ()
    budget = thinking.get("budget_tokens")
    if not isinstance(budget, int) or isinstance(budget, bool) or budget < 1024:
        raise invalid_request("thinking.budget_tokens: Input should be at least 1024")
    if budget >= max_tokens:
        raise invalid_request("`max_tokens` must be greater than `thinking.budget_tokens`")
    return compose_thinking(prompt)


class _Reply:
    """The message being answered: its id, model, thinking and token counts."""

    def __init__(self, model: str, input_tokens: int, thoughts: tuple[str, ...] = ()) -> None:
        self.id = "msg_" + secrets.token_hex(12)
        self.tool_use_id = "toolu_" + secrets.token_hex(12)
        self.model = model
        self.input_tokens = input_tokens
        self.thoughts = thoughts
        self.signature = secrets.token_hex(16)

    def output_tokens(self, completion: Completion) -> int:
        return completion.tokens + len(self.thoughts)

    def thinking_block(self, *, complete: bool) -> dict[str, Any]:
        return {
            "type": "thinking",
            "thinking": "".join(self.thoughts) if complete else "",
            "signature": self.signature if complete else "",
        }

    def message(self, completion: Completion | None) -> dict[str, Any]:
        """The full message, or the empty one that opens a stream when ``completion`` is None."""
        return {
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": []
            if completion is None
            else [
                *([self.thinking_block(complete=True)] if self.thoughts else []),
                *self.blocks(completion, complete=True),
            ],
            "stop_reason": None if completion is None else _STOP_REASON[completion.finish],
            "stop_sequence": None if completion is None else completion.stop_sequence,
            "usage": {
                "input_tokens": self.input_tokens,
                "output_tokens": 1 if completion is None else self.output_tokens(completion),
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 0,
            },
        }

    def blocks(self, completion: Completion, *, complete: bool) -> list[dict[str, Any]]:
        """The content blocks (text, or a tool_use per call); streams open them empty and fill
        them with deltas."""
        if not completion.tool_calls:
            return [{"type": "text", "text": completion.text if complete else ""}]
        return [
            {
                "type": "tool_use",
                "id": self.tool_use_id if index == 0 else f"{self.tool_use_id}_{index}",
                "name": call.name,
                "input": call.input if complete else {},
            }
            for index, call in enumerate(completion.tool_calls)
        ]


async def _stream(events: EventStream, reply: _Reply, completion: Completion) -> None:
    async def send(payload: dict[str, Any], *, token: bool = False) -> None:
        await events.send(orjson.dumps(payload), event=str(payload["type"]), token=token)

    await send({"type": "message_start", "message": reply.message(None)})
    first = 0
    if reply.thoughts:
        block = reply.thinking_block(complete=False)
        await send({"type": "content_block_start", "index": 0, "content_block": block})
        await send({"type": "ping"})
        for piece in reply.thoughts:
            delta = {"type": "thinking_delta", "thinking": piece}
            await send({"type": "content_block_delta", "index": 0, "delta": delta}, token=True)
        delta = {"type": "signature_delta", "signature": reply.signature}
        await send({"type": "content_block_delta", "index": 0, "delta": delta})
        await send({"type": "content_block_stop", "index": 0})
        first = 1
    calls = completion.tool_calls
    for number, block in enumerate(reply.blocks(completion, complete=False)):
        index = first + number
        await send({"type": "content_block_start", "index": index, "content_block": block})
        if index == 0:
            await send({"type": "ping"})
        pieces = completion.call_pieces(calls[number]) if calls else completion.pieces
        for piece in pieces:
            if not calls:
                delta = {"type": "text_delta", "text": piece}
            else:
                delta = {"type": "input_json_delta", "partial_json": piece}
            await send({"type": "content_block_delta", "index": index, "delta": delta}, token=True)
        await send({"type": "content_block_stop", "index": index})
    await send(
        {
            "type": "message_delta",
            "delta": {
                "stop_reason": _STOP_REASON[completion.finish],
                "stop_sequence": completion.stop_sequence,
            },
            "usage": {"output_tokens": reply.output_tokens(completion)},
        }
    )
    await send({"type": "message_stop"})


def _answer(
    body: Mapping[str, Any], turns: list[dict[str, Any]], max_tokens: int, exchange: Exchange
) -> Completion:
    if exchange.behaviour.leak_system_prompt:
        return compose_leak(text_of(body.get("system")))
    prompt = text_of(body_fields.last_user_content(turns))
    forced = _forced_tool(body)
    if forced is not None:
        return compose_tool_call(forced[0], forced[1], prompt)
    names = {
        tool["name"]
        for tool in body.get("tools") or []
        if isinstance(tool, dict) and isinstance(tool.get("name"), str)
    }
    script = scripted(turns, exchange.behaviour, names)
    if script is not None:
        return script
    stop = body_fields.string_list(body, "stop_sequences")
    return compose_text(prompt, exchange.behaviour.completion_tokens, max_tokens, stop)


def _forced_tool(body: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """The tool ``tool_choice`` forces (``tool`` by name, or ``any``), with its input schema."""
    choice = body.get("tool_choice")
    if not isinstance(choice, dict) or choice.get("type") in ("auto", "none"):
        return None
    tools: dict[str, Mapping[str, Any]] = {
        tool["name"]: tool.get("input_schema") or {}
        for tool in body.get("tools") or []
        if isinstance(tool, dict) and isinstance(tool.get("name"), str)
    }
    if choice.get("type") == "any" and tools:
        name = next(iter(tools))
        return name, tools[name]
    if choice.get("type") == "tool" and choice.get("name") in tools:
        return choice["name"], tools[choice["name"]]
    raise invalid_request("tool_choice: must be auto, any, none, or name a tool listed in tools")
