"""Anthropic's Messages API (``POST /v1/messages``), answered by the chat request path.

A Messages body is translated to a chat request by the one two-way translation module
(``gateway.providers.anthropic_translation``), sent through the same layers as
``/v1/chat/completions`` (keys and scopes, limits, cache, guard, request log, routing,
retries, fallback), and the answer told back as Anthropic's ``message`` or event stream.
Behind it, an Anthropic deployment is spoken to in its own API again by its provider; any
OpenAI-compatible deployment serves it as well.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncGenerator, Callable

from propylon.errors import ModelNotAllowed
from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import ChatService, JSONObject, native_answer, with_native_body
from propylon.gateway.providers.anthropic_translation import (
    MessageEvents,
    anthropic_message,
    chat_request,
)
from propylon.tokens import TokenCounter

ResolveModel = Callable[[str], str]
"""A requested model name -> the public name it resolves to (raises ``ModelNotFound``)."""


def _message_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


class MessagesService:
    """Create messages, streamed or not, and count a request's input tokens."""

    def __init__(self, chat: ChatService, counter: TokenCounter, resolve: ResolveModel) -> None:
        self._chat = chat
        self._counter = counter
        self._resolve = resolve

    async def create(self, body: JSONObject, call: CallInfo) -> JSONObject:
        """A message. The chat request stands for it on the request path (limits, cache,
        guard, log); an Anthropic deployment is sent the body itself (passthrough) and its
        reply is returned as it came, with Propylon's id (the one the request log keeps,
        by which feedback names it) and the public model name."""
        request = with_native_body(chat_request(body), body)
        call.response_id = message_id = _message_id()
        completion = await self._chat.complete(request, call)
        passed = native_answer(completion)
        if passed is not None:
            return {**passed, "id": message_id, "model": request["model"]}
        message = anthropic_message(completion, message_id=message_id, model=request["model"])
        extension = completion.get("propylon")
        if isinstance(extension, dict):
            message["propylon"] = extension  # e.g. a RAG answer's citations
        return message

    async def stream(self, body: JSONObject, call: CallInfo) -> AsyncGenerator[JSONObject, None]:
        """The events of a streamed message: an Anthropic deployment's own (passthrough),
        or told from chat chunks. Failures before the first chunk are raised here (nothing
        has been sent yet); later ones end the stream with an ``error`` event."""
        request = with_native_body(chat_request(body), body)
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
        call.response_id = message_id = _message_id()
        stream = await self._chat.stream(request, call)
        return MessageEvents(message_id, request["model"]).events(stream)

    async def count_tokens(self, body: JSONObject, call: CallInfo) -> JSONObject:
        """``{"input_tokens": n}``, counted offline with the tokenizer the limits use (for
        Claude models an estimate: Anthropic's tokenizer is not public)."""
        request = chat_request({"max_tokens": 1, **body})
        model = self._resolve(request["model"])
        principal = call.principal
        if principal is not None and not principal.can_use_model(model):
            raise ModelNotAllowed(model)
        tokens = self._counter.count_messages(request["messages"], model, request.get("tools"))
        return {"input_tokens": tokens}
