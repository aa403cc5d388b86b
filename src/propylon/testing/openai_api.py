"""OpenAI's wire format: chat completions (plain and streamed), embeddings, models.

Shapes follow what api.openai.com sends, field for field where clients read them: the
streamed role chunk, tool-call deltas keyed by ``index``, the usage-only chunk when
``stream_options.include_usage`` is set, and ``data: [DONE]``.
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
    Finish,
    compose_leak,
    compose_text,
    compose_tool_call,
    count_tokens,
    scripted,
    text_of,
)
from propylon.testing.embedding import as_base64, as_floats, embed
from propylon.testing.event_stream import EventStream
from propylon.testing.exchange import Exchange
from propylon.testing.wire_error import invalid_request

_FINISH: dict[Finish, str] = {
    "stop": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
}
_FINGERPRINT = "fp_propylon_fake"
_CREATED = 1_700_000_000


async def chat_completions(exchange: Exchange) -> web.StreamResponse:
    """``POST /v1/chat/completions``."""
    body = exchange.body
    model = body_fields.required_str(body, "model")
    messages = body_fields.required_messages(body)
    stream, include_usage = body_fields.openai_streaming(body)
    completion = _answer(body, messages, exchange)
    await exchange.pause(completion.delay_s)
    prompt_tokens = count_tokens(*(text_of(m.get("content")) for m in messages))
    usage = _usage(prompt_tokens, completion.tokens)
    reports = exchange.behaviour.report_usage
    include_usage = reports and include_usage
    reply = _Reply(model, include_usage)
    if not stream:
        await exchange.pause(exchange.behaviour.non_stream_delay_s(completion.tokens))
        answer = reply.completion(completion, usage)
        if not reports:
            del answer["usage"]
        return exchange.json(answer)
    events = await exchange.open_stream()
    await _stream(events, reply, completion, usage if include_usage else None)
    return await events.close()


async def embeddings(exchange: Exchange) -> web.Response:
    """``POST /v1/embeddings``; vectors from ``propylon.testing.embedding``."""
    body = exchange.body
    model = body_fields.required_str(body, "model")
    texts = _embedding_inputs(body.get("input"))
    dimensions = body_fields.optional_positive_int(body, "dimensions")
    size = dimensions or exchange.behaviour.embedding_dimensions
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise invalid_request(
            "encoding_format: must be 'float' or 'base64'", param="encoding_format"
        )
    encode = as_base64 if encoding == "base64" else as_floats
    data = [
        {"object": "embedding", "index": index, "embedding": encode(embed(text, size))}
        for index, text in enumerate(texts)
    ]
    tokens = count_tokens(*texts)
    return exchange.json(
        {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def list_models(exchange: Exchange) -> web.Response:
    """``GET /v1/models`` as OpenAI lists them."""
    return exchange.json(
        {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": _CREATED, "owned_by": "propylon"}
                for name in exchange.behaviour.models
            ],
        }
    )


class _Reply:
    """The envelope shared by a completion and each of its chunks."""

    def __init__(self, model: str, include_usage: bool) -> None:
        self.model = model
        self.include_usage = include_usage
        self.id = "chatcmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.call_id = "call_" + secrets.token_hex(12)

    def completion(self, completion: Completion, usage: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": completion.text,
            "refusal": None,
            "annotations": [],
        }
        if completion.tool_calls:
            message["content"] = None
            message["tool_calls"] = [
                {
                    "id": self.id_of(index),
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for index, call in enumerate(completion.tool_calls)
            ]
        return {
            **self._envelope("chat.completion"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _FINISH[completion.finish],
                }
            ],
            "usage": usage,
        }

    def id_of(self, index: int) -> str:
        """The id of the answer's tool call number ``index`` (parallel calls each have one)."""
        return self.call_id if index == 0 else f"{self.call_id}_{index}"

    def chunk(self, delta: Mapping[str, Any], finish: str | None = None) -> bytes:
        """A delta chunk; with ``include_usage`` OpenAI sets ``usage: null`` on each."""
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk = {**self._envelope("chat.completion.chunk"), "choices": [choice]}
        if self.include_usage:
            chunk["usage"] = None
        return orjson.dumps(chunk)

    def usage_chunk(self, usage: dict[str, Any]) -> bytes:
        return orjson.dumps(
            {**self._envelope("chat.completion.chunk"), "choices": [], "usage": usage}
        )

    def _envelope(self, kind: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": kind,
            "created": self.created,
            "model": self.model,
            "system_fingerprint": _FINGERPRINT,
        }


async def _stream(
    events: EventStream, reply: _Reply, completion: Completion, usage: dict[str, Any] | None
) -> None:
    if not completion.tool_calls:
        await events.send(reply.chunk({"role": "assistant", "content": "", "refusal": None}))
        for piece in completion.pieces:
            await events.send(reply.chunk({"content": piece}), token=True)
    for index, call in enumerate(completion.tool_calls):
        opening = {
            "index": index,
            "id": reply.id_of(index),
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        first: dict[str, Any] = {"tool_calls": [opening]}
        if index == 0:
            first = {"role": "assistant", "content": None, **first}
        await events.send(reply.chunk(first))
        for piece in completion.call_pieces(call):
            delta = {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}
            await events.send(reply.chunk(delta), token=True)
    await events.send(reply.chunk({}, _FINISH[completion.finish]))
    if usage is not None:
        await events.send(reply.usage_chunk(usage))
    await events.send(b"[DONE]")


def _answer(
    body: Mapping[str, Any], messages: list[dict[str, Any]], exchange: Exchange
) -> Completion:
    if exchange.behaviour.leak_system_prompt:
        system = [m for m in messages if m.get("role") in ("system", "developer")]
        return compose_leak("\n".join(text_of(m.get("content")) for m in system))
    prompt = text_of(body_fields.last_user_content(messages))
    forced = _forced_tool(body)
    if forced is not None:
        return compose_tool_call(forced[0], forced[1], prompt)
    script = scripted(messages, exchange.behaviour, _function_names(body))
    if script is not None:
        return script
    limit = body_fields.optional_positive_int(body, "max_completion_tokens")
    if limit is None:
        limit = body_fields.optional_positive_int(body, "max_tokens")
    target = exchange.behaviour.completion_tokens
    return compose_text(prompt, target, limit, body_fields.string_list(body, "stop"))


def _function_names(body: Mapping[str, Any]) -> set[str]:
    names = set()
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.add(function["name"])
    return names


def _forced_tool(body: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """The function ``tool_choice`` forces, with its parameter schema; None lets it talk."""
    choice = body.get("tool_choice")
    if choice is None or choice in ("auto", "none"):
        return None
    functions: dict[str, Mapping[str, Any]] = {}
    for tool in body.get("tools") or []:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            functions[function["name"]] = function.get("parameters") or {}
    if choice == "required" and functions:
        name = next(iter(functions))
        return name, functions[name]
    if isinstance(choice, dict):
        forced = (choice.get("function") or {}).get("name")
        if forced in functions:
            return forced, functions[forced]
    raise invalid_request(
        "Invalid value for 'tool_choice': it must be 'none', 'auto', 'required' or name "
        "one of the functions in 'tools'.",
        param="tool_choice",
    )


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _embedding_inputs(value: object) -> list[str]:
    """``input`` as texts: a string, strings, a token array, or token arrays."""
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        value = [value]
    if isinstance(value, list) and value:
        texts: list[str] = []
        for item in value:
            if isinstance(item, str) and item:
                texts.append(item)
            elif isinstance(item, list) and item and all(isinstance(t, int) for t in item):
                texts.append(" ".join(f"t{token}" for token in item))
            else:
                break
        else:
            return texts
    raise invalid_request(
        "input: must be a non-empty string, array of strings, or array of token arrays",
        param="input",
    )
