"""OpenAI's legacy text completions (``POST /v1/completions``), relayed on the chat path.

The request takes the chat request path as the chat request that stands for it
(``gateway.providers.text_completions``), with ``CallInfo.api = "completions"``: keys,
limits, guard and the request log treat it as chat, and the gateway calls only deployments
that have the legacy API, in that API. Legacy completions are never cached (their answers
continue a prompt; a cached chat answer to the same text would be a different thing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import ChatService, ChatStream, JSONObject
from propylon.gateway.providers.text_completions import chat_request, text_chunk, text_completion

NO_CACHE = "no-cache, no-store"


class CompletionsService:
    def __init__(self, chat: ChatService) -> None:
        self._chat = chat

    async def create(self, body: JSONObject, call: CallInfo) -> JSONObject:
        call.api, call.cache_control = "completions", NO_CACHE
        return text_completion(await self._chat.complete(chat_request(body), call))

    async def stream(self, body: JSONObject, call: CallInfo) -> ChatStream:
        """``text_completion`` chunks; failures before the first one are raised here."""
        call.api, call.cache_control = "completions", NO_CACHE
        request = chat_request(body)
        request["stream"] = True
        if body.get("stream_options") is not None:
            request["stream_options"] = body["stream_options"]
        return _TextChunks(await self._chat.stream(request, call))


class _TextChunks:
    """The chat path's chunks, told as legacy ``text_completion`` chunks."""

    def __init__(self, inner: ChatStream) -> None:
        self._inner = inner

    def __aiter__(self) -> AsyncIterator[JSONObject]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[JSONObject]:
        async for chunk in self._inner:
            yield text_chunk(chunk)

    async def aclose(self) -> None:
        await self._inner.aclose()
