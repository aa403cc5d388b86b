"""``rag/<collection>`` as a chat model: any OpenAI client gets answers with citations.

``RagChatService`` wraps the chat service chain. A request whose ``model`` is
``rag/<collection name or id>`` is answered by ``Answerer`` over that collection of the
caller's tenant: the last user message is the question, the earlier user/assistant messages
are the (client-side) history, system messages are added to the instructions. The reply is a
normal ``chat.completion`` (or stream of chunks) for model ``rag/<collection>``, whose
``propylon`` extension field carries ``citations`` (document, chunk, character offsets into
``documents.text``, page), ``sources`` and the token breakdown (``rag_usage``). Optional
settings travel in the body's ``rag`` object (OpenAI SDK: ``extra_body={"rag": {...}}``):
``top_k``, ``mode``, ``filter``, ``model`` (the answer model) and ``conversation_id``
(server-side history; then the request's earlier messages are ignored).

Every other model is passed to the wrapped service untouched.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from propylon.errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from propylon.gateway.protocol import ChatService, ChatStream, JSONObject
from propylon.gateway.validation import one_choice
from propylon.rag.answer import Answerer, AnswerRequest, relay
from propylon.rag.conversations import Turn, parse_conversation_id
from propylon.rag.search import MAX_TOP_K, MODES, Mode
from propylon.storable import check_storable

if TYPE_CHECKING:
    from propylon.gateway.call import CallInfo
    from propylon.principal import Principal

PREFIX = "rag/"


class RagChatService:
    def __init__(self, inner: ChatService, answerer: Answerer) -> None:
        self._inner = inner
        self._answerer = answerer

    async def complete(self, request: JSONObject, call: CallInfo | None = None) -> JSONObject:
        model = request.get("model")
        if not (isinstance(model, str) and model.startswith(PREFIX)):
            return await self._inner.complete(request, call)
        principal = _principal(call)
        result = await self._answerer.answer(principal, parse_chat(request), call)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": result["created"],
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result["answer"]},
                    "logprobs": None,
                    "finish_reason": result["finish_reason"],
                }
            ],
            "usage": {
                k: result["usage"][k]
                for k in ("prompt_tokens", "completion_tokens", "total_tokens")
                if k in result["usage"]
            },
            "propylon": {
                "citations": result["citations"],
                "sources": result["sources"],
                "conversation_id": result["conversation_id"],
                "rag_usage": result["usage"],
            },
        }

    async def stream(self, request: JSONObject, call: CallInfo | None = None) -> ChatStream:
        model = request.get("model")
        if not (isinstance(model, str) and model.startswith(PREFIX)):
            return await self._inner.stream(request, call)
        principal = _principal(call)
        parsed = parse_chat(request)
        options = request.get("stream_options")
        prepared, stream = await self._answerer.stream(
            principal, parsed, call, stream_options=options if isinstance(options, dict) else None
        )
        return relay(prepared, stream, self._answerer, model)


def _principal(call: CallInfo | None) -> Principal:
    if call is None or call.principal is None:
        raise AuthenticationFailed("RAG models need an authenticated caller.")
    if not call.principal.has_feature("rag"):
        raise PermissionDenied("This API key may not use collections (feature `rag`).")
    return call.principal


def parse_chat(request: JSONObject) -> AnswerRequest:
    """The answer request a ``rag/…`` chat completion asks for."""
    model = str(request["model"])
    collection = model[len(PREFIX) :]
    if not collection:
        raise InvalidRequest("Name a collection: `rag/<collection name or id>`.", param="model")
    # The gateway's bodies are not checked at the edge (they go upstream as sent); this name is
    # looked up in PostgreSQL, which refuses a NUL: a 400 naming `model`, not a 500.
    check_storable(collection, "model")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("`messages` must be a non-empty array.", param="messages")
    # The question is searched in PostgreSQL and kept in a conversation: as for `/answer`, a
    # NUL there is a 400 naming the message.
    check_storable(messages, "messages")
    texts = [(m.get("role"), _text(m.get("content"))) for m in messages if isinstance(m, dict)]
    users = [i for i, (role, _) in enumerate(texts) if role == "user"]
    if not users:
        raise InvalidRequest("No user message to answer.", param="messages")
    last = users[-1]
    history = [
        Turn(i + 1, str(role), text)
        for i, (role, text) in enumerate(texts[:last])
        if role in ("user", "assistant") and text
    ]
    instructions = "\n\n".join(
        text for role, text in texts if role in ("system", "developer") and text
    )
    options = request.get("rag") or {}
    if not isinstance(options, dict):
        raise InvalidRequest("`rag` must be an object.", param="rag")
    one_choice(request)
    response_format = request.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") not in (None, "text"):
        raise InvalidRequest(
            "A `rag/` model answers in text with numbered citations: `response_format` must "
            "be `text`.",
            param="response_format",
        )
    return AnswerRequest(
        collection=collection,
        question=texts[last][1],
        top_k=_top_k(options.get("top_k")),
        mode=_mode(options.get("mode")),
        filter=_filter(options.get("filter")),
        model=_model(options.get("model")),
        conversation_id=parse_conversation_id(options.get("conversation_id")),
        history=history,
        instructions=instructions,
        max_tokens=_max_tokens(request.get("max_completion_tokens", request.get("max_tokens"))),
    )


def parse_answer(collection: str, body: dict[str, Any]) -> AnswerRequest:
    """``POST /v1/collections/{id}/answer`` body: ``{"question", "top_k", "mode", "filter",
    "model", "conversation_id", "max_tokens"}``."""
    question = body.get("question", body.get("query"))
    if not isinstance(question, str) or not question.strip():
        raise InvalidRequest(
            "`question` is required and must be a non-empty string.", param="question"
        )
    return AnswerRequest(
        collection=collection,
        question=question,
        top_k=_top_k(body.get("top_k")),
        mode=_mode(body.get("mode")),
        filter=_filter(body.get("filter")),
        model=_model(body.get("model")),
        conversation_id=parse_conversation_id(body.get("conversation_id")),
        max_tokens=_max_tokens(body.get("max_tokens")),
    )


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") in ("text", "input_text")
        )
    return ""


def _top_k(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TOP_K:
        raise InvalidRequest(f"`top_k` must be an integer from 1 to {MAX_TOP_K}.", param="top_k")
    return value


def _mode(value: Any) -> Mode:
    if value is None:
        return "hybrid"
    if value not in MODES:
        raise InvalidRequest("`mode` must be one of `dense`, `keyword`, `hybrid`.", param="mode")
    mode: Mode = value
    return mode


def _filter(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("`filter` must be a JSON object (metadata to match).", param="filter")
    check_storable(value, "rag.filter")
    return value


def _max_tokens(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidRequest("`max_tokens` must be a positive integer.", param="max_tokens")
    return value


def _model(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or value.startswith(PREFIX):
        raise InvalidRequest("`model` must be the name of a chat model.", param="model")
    return value
