"""Every token of an answer counted: the text an answer is billed for, and an estimate of its
usage with the tokenizer when an upstream gives none (the call is then marked estimated).

Billed text is more than ``content``: tool calls (their names and JSON arguments) and
reasoning text (``reasoning_content``, as DeepSeek and vLLM stream it) are completion tokens
too. Reasoning a provider keeps hidden can only come from its own usage, which is why
streams always ask for it (``stream_options.include_usage``).

``upstream_usage`` is the one place an upstream's token counts become ours: every reader of
an upstream's usage (answers, streams, the Anthropic translation, spend, and the OpenAI
provider's embeddings and rerank counts) goes through it or through ``token_count``. An
embeddings call without a sane count is estimated (``estimated_input_tokens``), as an answer
is; a rerank's insane count is 0.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from propylon.gateway.embedding_input import token_arrays
from propylon.gateway.protocol import JSONObject
from propylon.params import INT_MAX
from propylon.tokens import TokenCounter

_TEXT_FIELDS = ("content", "reasoning_content", "refusal")
MAX_TOKENS = INT_MAX  # the request log's and the usage tally's integer columns


def token_count(value: object) -> int | None:
    """``value`` as a token count, or None (unknown) when it is not an int in 0..2**31-1:
    a negative or huge count from an upstream would be billed, logged and counted as sent."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS:
        return value
    return None


def upstream_usage(usage: object) -> JSONObject | None:
    """An upstream's OpenAI-shaped usage with counts we trust, or None (unknown: estimate it)
    when its prompt or completion count is missing or insane. The total is recomputed; a
    cached count that is insane is dropped."""
    if not isinstance(usage, dict):
        return None
    prompt = token_count(usage.get("prompt_tokens"))
    completion = token_count(usage.get("completion_tokens", 0))
    if prompt is None or completion is None or prompt + completion > MAX_TOKENS:
        return None
    sane: JSONObject = {
        **usage,
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict):
        cached = token_count(details.get("cached_tokens"))
        rest = {k: v for k, v in details.items() if k != "cached_tokens"}
        kept = rest if cached is None else {**rest, "cached_tokens": min(cached, prompt)}
        sane["prompt_tokens_details"] = kept
    return sane


def message_texts(message: Any) -> Iterator[str]:
    """The billed text of one message or stream delta."""
    if not isinstance(message, dict):
        return
    for name in _TEXT_FIELDS:
        value = message.get(name)
        if isinstance(value, str):
            yield value
    for call in message.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            for name in ("name", "arguments"):
                value = function.get(name)
                if isinstance(value, str):
                    yield value


def answer_texts(result: JSONObject) -> Iterator[str]:
    """The billed text of a whole chat completion."""
    for choice in result.get("choices") or ():
        if isinstance(choice, dict):
            yield from message_texts(choice.get("message"))


def chunk_texts(chunk: JSONObject) -> Iterator[str]:
    """The billed text of one streamed chunk."""
    for choice in chunk.get("choices") or ():
        if isinstance(choice, dict):
            yield from message_texts(choice.get("delta"))


def estimated_usage(
    counter: TokenCounter, request: JSONObject, model: str, answer: str
) -> dict[str, int]:
    """OpenAI-shaped usage counted with the model's tokenizer."""
    messages = request.get("messages")
    tools = request.get("tools")
    prompt = counter.count_messages(
        messages if isinstance(messages, list) else [],
        model,
        tools if isinstance(tools, list) else None,
    )
    completion = counter.count_text(answer, model) if answer else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def estimated_input_tokens(
    counter: TokenCounter, texts: list[str], request: JSONObject | None, model: str
) -> int:
    """The input tokens of an embeddings call whose upstream gave no sane count: the token
    arrays' lengths when the client sent tokens, else the texts counted with the tokenizer."""
    arrays = token_arrays((request or {}).get("input"))
    if arrays is not None:
        return sum(map(len, arrays))
    return sum(counter.count_text(text, model) for text in texts)


def wants_usage(request: JSONObject) -> bool:
    """Whether the client asked for the usage chunk of a stream."""
    options = request.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def asking_usage(request: JSONObject) -> JSONObject:
    """``request`` with ``stream_options.include_usage`` set, as sent upstream."""
    options = request.get("stream_options")
    merged = {**(options if isinstance(options, dict) else {}), "include_usage": True}
    return {**request, "stream_options": merged}
