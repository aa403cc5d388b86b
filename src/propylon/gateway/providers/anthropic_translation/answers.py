"""Answers, both ways, between OpenAI chat completions and Anthropic's Messages API.

``chat_completion`` turns an Anthropic deployment's ``message`` into a ``chat.completion``;
``anthropic_message`` tells a ``chat.completion`` as Anthropic's ``message`` (Propylon's own
``/v1/messages``). Stop reasons and usage are mapped both ways here, and ``anthropic_error``
renders any Propylon error in Anthropic's shape.
"""

from __future__ import annotations

import orjson

from propylon.errors import PropylonError, UpstreamError
from propylon.gateway.citations import char_locations, extension_citations
from propylon.gateway.protocol import JSONObject
from propylon.gateway.usage import token_count

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


# --- Anthropic message -> OpenAI completion ----------------------------------------------


def chat_completion(
    message: JSONObject, *, created: int, name: str, answer_tool: str | None = None
) -> JSONObject:
    """The ``chat.completion`` for Anthropic's answer; ``name`` names the upstream in errors.
    The input of the tool ``answer_tool`` (``response_format``) is the message content;
    thinking blocks become ``reasoning_content``."""
    blocks = message.get("content")
    if message.get("type") != "message" or not isinstance(blocks, list):
        raise UpstreamError(f"{name} returned a body that is not a message")
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[JSONObject] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "thinking":
            thinking.append(str(block.get("thinking", "")))
        elif block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use" and answer_tool and block.get("name") == answer_tool:
            texts.append(orjson.dumps(block.get("input") or {}).decode())
        elif block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
    reply: JSONObject = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
    }
    if calls:
        reply["tool_calls"] = calls
    if thinking:  # billed output too; told the way DeepSeek and vLLM tell reasoning
        reply["reasoning_content"] = "".join(thinking)
    return {
        "id": f"chatcmpl-{message.get('id', '')}",
        "object": "chat.completion",
        "created": created,
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "finish_reason": "stop"
                if answer_tool and not calls
                else finish_reason(message.get("stop_reason")),
            }
        ],
        "usage": openai_usage(message.get("usage")),
    }


def finish_reason(stop_reason: object) -> str:
    """OpenAI's ``finish_reason`` for Anthropic's ``stop_reason``."""
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def openai_usage(usage: object) -> JSONObject:
    """OpenAI's usage, where prompt tokens include those read from and written to the cache;
    empty when the input or output count is unknown or insane (``token_count``): the gateway
    then estimates the usage."""
    counts = usage if isinstance(usage, dict) else {}
    fresh = token_count(counts.get("input_tokens"))
    completion = token_count(counts.get("output_tokens"))
    if fresh is None or completion is None:
        return {}
    cached = token_count(counts.get("cache_read_input_tokens")) or 0
    prompt = fresh + cached + (token_count(counts.get("cache_creation_input_tokens")) or 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


# --- OpenAI completion -> Anthropic message ----------------------------------------------


def anthropic_message(completion: JSONObject, *, message_id: str, model: str) -> JSONObject:
    """Anthropic's ``message`` for a ``chat.completion``."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    reply = choice.get("message") if isinstance(choice, dict) else None
    reply = reply if isinstance(reply, dict) else {}
    blocks: list[JSONObject] = []
    if isinstance(reply.get("content"), str) and reply["content"]:
        block: JSONObject = {"type": "text", "text": reply["content"]}
        citations = extension_citations(completion)
        if citations:
            block["citations"] = char_locations(citations)  # a RAG answer's
        blocks.append(block)
    for call in reply.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict):
            continue
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            arguments = {"_raw": function.get("arguments")}  # the model's own broken JSON
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id"),
                "name": function.get("name"),
                "input": arguments if isinstance(arguments, dict) else {"value": arguments},
            }
        )
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": blocks,
        "stop_reason": stop_reason(finish),
        "stop_sequence": None,
        "usage": anthropic_usage(completion.get("usage")),
    }


def stop_reason(finish: object) -> str:
    """Anthropic's ``stop_reason`` for OpenAI's ``finish_reason``."""
    return _STOP_REASONS.get(finish, "end_turn") if isinstance(finish, str) else "end_turn"


def anthropic_usage(usage: object) -> JSONObject:
    """Anthropic's usage, where input tokens exclude those read from the cache."""
    counts = usage if isinstance(usage, dict) else {}
    details = counts.get("prompt_tokens_details")
    cached = token_count(details.get("cached_tokens") if isinstance(details, dict) else None)
    cached = cached or 0
    prompt = token_count(counts.get("prompt_tokens")) or 0
    return {
        "input_tokens": max(prompt - cached, 0),
        "cache_read_input_tokens": cached,
        "output_tokens": token_count(counts.get("completion_tokens")) or 0,
    }


def anthropic_error(error: PropylonError) -> JSONObject:
    """Anthropic's error body for ``error`` (the same message and status as OpenAI's)."""
    status = error.http_status
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}
