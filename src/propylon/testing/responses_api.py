"""OpenAI's Responses API wire format (``POST /v1/responses``), plain and streamed.

The answer is the same seeded echo as chat's, of the last user text in ``input``; a
``tool_choice`` naming a function tool (or ``required``) answers with a ``function_call``
item instead. Streams send OpenAI's typed events, each with its ``event:`` name and
``sequence_number``: response.created, response.in_progress, response.output_item.added,
(response.content_part.added, response.output_text.delta…, response.output_text.done,
response.content_part.done | response.function_call_arguments.delta…,
response.function_call_arguments.done), response.output_item.done, response.completed.
Nothing is stored: ``previous_response_id`` is refused, as by a server that has no such id.
With ``report_usage`` off, responses carry ``usage: null``. With ``reasoning`` asked, the output
opens with a reasoning item whose summary streams as ``response.reasoning_summary_text.delta``
events, its tokens counted in ``output_tokens`` (``reasoning_tokens``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from propylon.testing import body_fields
from propylon.testing.completion import (
    Completion,
    compose_leak,
    compose_text,
    compose_thinking,
    compose_tool_call,
    count_tokens,
    text_of,
)
from propylon.testing.event_stream import EventStream
from propylon.testing.exchange import Exchange
from propylon.testing.wire_error import invalid_request


async def responses(exchange: Exchange) -> web.StreamResponse:
    """``POST /v1/responses``."""
    body = exchange.body
    model = body_fields.required_str(body, "model")
    if body.get("previous_response_id") is not None:
        raise invalid_request(
            "Previous response with id not found (the fake stores nothing).",
            param="previous_response_id",
        )
    texts = _input_texts(body.get("input"))
    limit = body_fields.optional_positive_int(body, "max_output_tokens")
    forced = _forced_function(body)
    prompt = texts[-1] if texts else ""
    if exchange.behaviour.leak_system_prompt:
        completion = compose_leak(text_of(body.get("instructions")))
    elif forced is not None:
        completion = compose_tool_call(forced[0], forced[1], prompt)
    else:
        completion = compose_text(prompt, exchange.behaviour.completion_tokens, limit)
    input_tokens = count_tokens(text_of(body.get("instructions")), *texts)
    reply = _Reply(model, body, input_tokens, report_usage=exchange.behaviour.report_usage)
    if isinstance(body.get("reasoning"), dict):
        reply.thoughts = compose_thinking(prompt)
    if body.get("stream") is not True:
        await exchange.pause(exchange.behaviour.non_stream_delay_s(completion.tokens))
        return exchange.json(reply.response(completion, "completed"))
    events = await exchange.open_stream()
    await _stream(events, reply, completion)
    return await events.close()


def _input_texts(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list) or not value:
        raise invalid_request("input: must be a string or a non-empty array", param="input")
    texts: list[str] = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise invalid_request(f"input[{index}]: must be an object", param="input")
        kind = item.get("type", "message")
        if kind == "message" and item.get("role") == "user":
            texts.append(text_of(item.get("content")))
        elif kind == "function_call_output":
            texts.append(str(item.get("output") or ""))
        elif kind not in ("message", "function_call", "reasoning"):
            raise invalid_request(f"input[{index}].type: unsupported {kind!r}", param="input")
    return texts


def _forced_function(body: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    choice = body.get("tool_choice")
    if choice is None or choice in ("auto", "none"):
        return None
    functions = {
        tool["name"]: tool.get("parameters") or {}
        for tool in body.get("tools") or []
        if isinstance(tool, dict) and tool.get("type") == "function" and "name" in tool
    }
    if choice == "required" and functions:
        name = next(iter(functions))
        return name, functions[name]
    if isinstance(choice, dict) and choice.get("name") in functions:
        return choice["name"], functions[choice["name"]]
    raise invalid_request(
        "tool_choice: must be none, auto, required, or name a function tool", param="tool_choice"
    )


class _Reply:
    def __init__(
        self, model: str, body: Mapping[str, Any], input_tokens: int, *, report_usage: bool
    ) -> None:
        self.id = "resp_" + secrets.token_hex(12)
        self.item_id = ("fc_" if _forced_function(body) else "msg_") + secrets.token_hex(12)
        self.call_id = "call_" + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = model
        self.body = body
        self.input_tokens = input_tokens
        self.report_usage = report_usage
        self.thoughts: tuple[str, ...] = ()  # a reasoning summary, when `reasoning` is asked
        self.reasoning_id = "rs_" + secrets.token_hex(12)

    @property
    def first(self) -> int:
        """The output index of the answer's item (after the reasoning item, if any)."""
        return 1 if self.thoughts else 0

    def reasoning(self, *, complete: bool) -> dict[str, Any]:
        text = "".join(self.thoughts)
        summary = [{"type": "summary_text", "text": text}] if complete else []
        return {"type": "reasoning", "id": self.reasoning_id, "summary": summary}

    def item(self, completion: Completion, *, complete: bool) -> dict[str, Any]:
        status = "completed" if complete else "in_progress"
        call = completion.tool_call
        if call is not None:
            return {
                "type": "function_call",
                "id": self.item_id,
                "call_id": self.call_id,
                "name": call.name,
                "arguments": call.arguments if complete else "",
                "status": status,
            }
        content = [_text_part(completion.text)] if complete else []
        return {
            "type": "message",
            "id": self.item_id,
            "role": "assistant",
            "status": status,
            "content": content,
        }

    def response(self, completion: Completion | None, status: str) -> dict[str, Any]:
        done = completion is not None and status == "completed"
        truncated = done and completion is not None and completion.finish == "length"
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": "incomplete" if truncated else status,
            "error": None,
            "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
            "instructions": self.body.get("instructions"),
            "max_output_tokens": self.body.get("max_output_tokens"),
            "model": self.model,
            "output": [
                *([self.reasoning(complete=True)] if self.thoughts else []),
                self.item(completion, complete=True),
            ]
            if done and completion
            else [],
            "parallel_tool_calls": True,
            "previous_response_id": None,
            "temperature": self.body.get("temperature"),
            "tool_choice": self.body.get("tool_choice", "auto"),
            "tools": self.body.get("tools") or [],
            "top_p": self.body.get("top_p"),
            "metadata": self.body.get("metadata") or {},
            "usage": {
                "input_tokens": self.input_tokens,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": completion.tokens + len(self.thoughts),
                "output_tokens_details": {"reasoning_tokens": len(self.thoughts)},
                "total_tokens": self.input_tokens + completion.tokens + len(self.thoughts),
            }
            if done and completion and self.report_usage
            else None,
        }


def _text_part(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": []}


async def _stream(events: EventStream, reply: _Reply, completion: Completion) -> None:
    sequence = 0

    async def send(kind: str, *, token: bool = False, **fields: Any) -> None:
        nonlocal sequence
        payload = {"type": kind, "sequence_number": sequence, **fields}
        sequence += 1
        await events.send(orjson.dumps(payload), event=kind, token=token)

    where: dict[str, Any] = {"item_id": reply.item_id, "output_index": reply.first}
    await send("response.created", response=reply.response(None, "in_progress"))
    await send("response.in_progress", response=reply.response(None, "in_progress"))
    if reply.thoughts:
        thought: dict[str, Any] = {
            "item_id": reply.reasoning_id,
            "output_index": 0,
            "summary_index": 0,
        }
        item = reply.reasoning(complete=False)
        await send("response.output_item.added", output_index=0, item=item)
        part = {"type": "summary_text", "text": ""}
        await send("response.reasoning_summary_part.added", **thought, part=part)
        for piece in reply.thoughts:
            await send("response.reasoning_summary_text.delta", token=True, **thought, delta=piece)
        text = "".join(reply.thoughts)
        await send("response.reasoning_summary_text.done", **thought, text=text)
        part = {"type": "summary_text", "text": text}
        await send("response.reasoning_summary_part.done", **thought, part=part)
        item = reply.reasoning(complete=True)
        await send("response.output_item.done", output_index=0, item=item)
    await send(
        "response.output_item.added",
        output_index=reply.first,
        item=reply.item(completion, complete=False),
    )
    call = completion.tool_call
    if call is None:
        await send("response.content_part.added", **where, content_index=0, part=_text_part(""))
        for piece in completion.pieces:
            await send(
                "response.output_text.delta", token=True, **where, content_index=0, delta=piece
            )
        await send("response.output_text.done", **where, content_index=0, text=completion.text)
        part = _text_part(completion.text)
        await send("response.content_part.done", **where, content_index=0, part=part)
    else:
        for piece in completion.pieces:
            await send("response.function_call_arguments.delta", token=True, **where, delta=piece)
        await send(
            "response.function_call_arguments.done",
            **where,
            name=call.name,
            arguments=call.arguments,
        )
    await send(
        "response.output_item.done",
        output_index=reply.first,
        item=reply.item(completion, complete=True),
    )
    await send("response.completed", response=reply.response(completion, "completed"))
