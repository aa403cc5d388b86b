"""Legacy text completions (``POST /v1/completions``) and chat, both ways.

A legacy request takes the chat request path as a chat request whose one user message is the
prompt (``chat_request``), so keys, limits, guard and the request log treat it like chat; the
fields only legacy completions know (``echo``, ``suffix``, ``best_of``, integer ``logprobs``)
ride in the ``propylon.completion`` extension, which no chat upstream sees. A deployment that
has the legacy API is then called with the original shape again (``completions_body``), and
its answer and chunks are read as chat (``chat_completion``, ``chat_chunk``, each choice's
``text`` as the message content and its ``logprobs`` kept as they came), then told back to the
client as ``text_completion`` objects (``text_completion``, ``text_chunk``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from propylon.errors import InvalidRequest, UpstreamError, UpstreamStreamInterrupted
from propylon.gateway.protocol import JSONObject

EXTENSION = "propylon"
_SHARED = (
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "seed",
    "user",
)
_LEGACY_ONLY = ("echo", "suffix", "best_of", "logprobs")


# --- legacy request -> chat request -> legacy upstream body -------------------------------


def chat_request(body: JSONObject) -> JSONObject:
    """The chat request standing for a legacy completions body (``stream`` left out)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` is required and must be a non-empty string.", param="model")
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequest(
            "`prompt` must be a string (one prompt per request; token arrays are not supported).",
            param="prompt",
        )
    request: JSONObject = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    request.update({name: body[name] for name in _SHARED if body.get(name) is not None})
    extension = body.get(EXTENSION)
    if extension is not None and not isinstance(extension, dict):
        raise InvalidRequest("`propylon` must be an object.", param="propylon")
    legacy = {name: body[name] for name in _LEGACY_ONLY if body.get(name) is not None}
    request[EXTENSION] = {**(extension or {}), "completion": legacy}
    return request


def completions_body(request: JSONObject, model: str) -> JSONObject:
    """The upstream's legacy body for a chat request made by ``chat_request``."""
    messages = request.get("messages")
    prompt = messages[-1].get("content") if isinstance(messages, list) and messages else None
    body: JSONObject = {"model": model, "prompt": prompt if isinstance(prompt, str) else ""}
    body.update({name: request[name] for name in _SHARED if request.get(name) is not None})
    extension = request.get(EXTENSION)
    legacy = extension.get("completion") if isinstance(extension, dict) else None
    if isinstance(legacy, dict):
        body.update(legacy)
    for name in ("stream", "stream_options"):
        if name in request:
            body[name] = request[name]
    return body


# --- legacy answers <-> chat ---------------------------------------------------------------


def chat_completion(answer: JSONObject, name: str) -> JSONObject:
    """A ``chat.completion`` standing for an upstream's ``text_completion``; an
    ``UpstreamError`` (502) when it is none, or a choice's ``text`` is not text."""
    if not isinstance(answer.get("choices"), list):
        raise UpstreamError(f"{name} returned a body that is not a text completion")

    def message(choice: JSONObject) -> JSONObject:
        text = _upstream_text(choice, name, UpstreamError)
        return {"message": {"role": "assistant", "content": text}}

    return _retold(answer, "chat.completion", message)


def chat_chunk(chunk: JSONObject, name: str) -> JSONObject:
    """A ``chat.completion.chunk`` standing for a streamed ``text_completion`` chunk; a
    choice whose ``text`` is not text breaks the stream (``UpstreamStreamInterrupted``)."""

    def delta(choice: JSONObject) -> JSONObject:
        text = _upstream_text(choice, name, UpstreamStreamInterrupted)
        return {"delta": {"content": text} if text else {}}

    return _retold(chunk, "chat.completion.chunk", delta)


def _upstream_text(choice: JSONObject, name: str, error: type[UpstreamError]) -> str:
    """A legacy choice's ``text`` (null or absent: ""); ``error`` when it is anything else,
    which the chat layers above (record, guard, cache) would otherwise take as content."""
    text = choice.get("text")
    if text is None:
        return ""
    if type(text) is not str:
        raise error(f"{name} returned a text completion whose text is not a string")
    return text


def text_completion(completion: JSONObject) -> JSONObject:
    """The client's ``text_completion`` for the chat path's answer."""
    return _retold(completion, "text_completion", lambda c: {"text": _text(c.get("message"))})


def text_chunk(chunk: JSONObject) -> JSONObject:
    """The client's streamed ``text_completion`` chunk for a chat chunk."""
    return _retold(chunk, "text_completion", lambda c: {"text": _text(c.get("delta"))})


def _retold(
    source: JSONObject, kind: str, content: Callable[[JSONObject], JSONObject]
) -> JSONObject:
    """``source`` as an object of ``kind``: each choice's ``content`` in the other shape, its
    index, logprobs (as they came) and finish reason kept."""
    out: JSONObject = {
        "id": source.get("id"),
        "object": kind,
        "created": source.get("created"),
        "model": source.get("model"),
    }
    choices = source.get("choices")
    out["choices"] = [
        {
            "index": choice.get("index", index),
            **content(choice),
            "logprobs": choice.get("logprobs"),
            "finish_reason": choice.get("finish_reason"),
        }
        for index, choice in enumerate(choices if isinstance(choices, list) else [])
        if isinstance(choice, dict)
    ]
    if "usage" in source:
        out["usage"] = source["usage"]
    return out


def _text(message: Any) -> str:
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else ""
