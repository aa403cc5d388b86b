"""OpenAI's legacy text completions (``POST /v1/completions``), plain and streamed.

Shapes follow what api.openai.com sends for ``gpt-3.5-turbo-instruct``: a ``text_completion``
object with ``choices[].text``; streamed, ``text_completion`` chunks with the next piece of
text each, the usage-only chunk when ``stream_options.include_usage`` is set, then
``data: [DONE]``. The answer is the same seeded echo as chat's, from the prompt.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import orjson
from aiohttp import web

from propylon.testing import body_fields
from propylon.testing.completion import compose_text, count_tokens
from propylon.testing.exchange import Exchange
from propylon.testing.wire_error import invalid_request

_FINISH = {"stop": "stop", "stop_sequence": "stop", "length": "length", "tool_calls": "stop"}


async def completions(exchange: Exchange) -> web.StreamResponse:
    """``POST /v1/completions``."""
    body = exchange.body
    model = body_fields.required_str(body, "model")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise invalid_request("prompt: must be a string", param="prompt")
    stream, include_usage = body_fields.openai_streaming(body)
    limit = body_fields.optional_positive_int(body, "max_tokens") or 16  # OpenAI's default
    stop = body_fields.string_list(body, "stop")
    completion = compose_text(prompt, exchange.behaviour.completion_tokens, limit, stop)
    prompt_tokens = count_tokens(prompt)
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion.tokens,
        "total_tokens": prompt_tokens + completion.tokens,
    }
    envelope: dict[str, Any] = {
        "id": "cmpl-" + secrets.token_hex(12),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
    }
    finish = _FINISH[completion.finish]
    if not stream:
        await exchange.pause(exchange.behaviour.non_stream_delay_s(completion.tokens))
        choice = {"index": 0, "text": completion.text, "logprobs": None, "finish_reason": finish}
        return exchange.json({**envelope, "choices": [choice], "usage": usage})
    events = await exchange.open_stream()

    def chunk(text: str, finish_reason: str | None) -> bytes:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
        extra = {"usage": None} if include_usage else {}
        return orjson.dumps({**envelope, "choices": [choice], **extra})

    for piece in completion.pieces:
        await events.send(chunk(piece, None), token=True)
    await events.send(chunk("", finish))
    if include_usage:
        await events.send(orjson.dumps({**envelope, "choices": [], "usage": usage}))
    await events.send(b"[DONE]")
    return await events.close()
