"""Anthropic's Messages API, spoken to in OpenAI's shape.

Requests are translated to ``POST {base_url}/v1/messages``, and answers and stream events
back to ``chat.completion`` objects and chunks, by ``anthropic_translation`` (the one
two-way translation between the two APIs); this module adds the HTTP exchange. Anthropic's
error bodies (``{"type": "error", "error": {"type", "message"}}``) are read by the shared
``error_from_response``, so 429 becomes ``UpstreamRateLimited``, 529 and 5xx retryable
``UpstreamError``, and other 4xx ``UpstreamRejected`` with Anthropic's message.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import orjson

from propylon.gateway.protocol import NATIVE, ChatStream, JSONObject, upstream_body
from propylon.gateway.providers.anthropic_translation import (
    chat_completion,
    completion_chunks,
    messages_request,
    native_chunks,
    response_tool,
)
from propylon.gateway.providers.transport import (
    Timeouts,
    open_sse_stream,
    post_json,
)
from propylon.settings import DeploymentConfig

DEFAULT_BASE_URL = "https://api.anthropic.com"
API_VERSION = "2023-06-01"


class AnthropicProvider:
    """Chat against one Anthropic deployment, and Messages passed through natively."""

    native_apis = frozenset({"messages"})

    def __init__(self, deployment: DeploymentConfig, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._model = deployment.model or ""
        self.name = deployment.display_name
        # The API root, given with or without the version segment.
        base = (deployment.base_url or DEFAULT_BASE_URL).rstrip("/").removesuffix("/v1")
        self._url = f"{base}/v1/messages"
        self._headers = {"Content-Type": "application/json", "anthropic-version": API_VERSION}
        key = deployment.api_key()
        if key is not None:
            self._headers["x-api-key"] = key.get_secret_value()
        self._timeouts = Timeouts.of(deployment)

    async def complete(self, request: JSONObject) -> JSONObject:
        message = await post_json(
            self._session,
            self._url,
            data=orjson.dumps(messages_request(request, self._model, stream=False)),
            headers=self._headers,
            timeouts=self._timeouts,
            name=self.name,
        )
        return chat_completion(
            message, created=int(time.time()), name=self.name, answer_tool=response_tool(request)
        )

    async def complete_native(self, api: str, body: JSONObject) -> JSONObject:
        """A client's Messages body sent as it is (``model`` replaced, Propylon's extension
        removed); the chat completion standing for the reply carries the reply itself."""
        message = await post_json(
            self._session,
            self._url,
            data=self._native(body, stream=False),
            headers=self._headers,
            timeouts=self._timeouts,
            name=self.name,
        )
        completion = chat_completion(message, created=int(time.time()), name=self.name)
        completion["propylon"] = {NATIVE: message}
        return completion

    async def stream_native(self, api: str, body: JSONObject) -> ChatStream:
        """A client's streamed Messages body sent as it is; Anthropic's own events come back,
        each on the chat chunk that stands for it (``native_chunks``)."""
        created = int(time.time())

        def parse(lines: AsyncIterator[bytes], name: str) -> AsyncIterator[JSONObject]:
            return native_chunks(lines, name, created=created)

        return await open_sse_stream(
            self._session,
            self._url,
            data=self._native(body, stream=True),
            headers=self._headers,
            timeouts=self._timeouts,
            name=self.name,
            parse=parse,
        )

    def _native(self, body: JSONObject, *, stream: bool) -> bytes:
        return orjson.dumps(upstream_body(body, self._model, stream=stream))

    async def stream(self, request: JSONObject) -> ChatStream:
        data = orjson.dumps(messages_request(request, self._model, stream=True))
        options = request.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        created = int(time.time())
        answer_tool = response_tool(request)

        def parse(lines: AsyncIterator[bytes], name: str) -> AsyncIterator[JSONObject]:
            return completion_chunks(
                lines, name, include_usage=include_usage, created=created, answer_tool=answer_tool
            )

        return await open_sse_stream(
            self._session,
            self._url,
            data=data,
            headers=self._headers,
            timeouts=self._timeouts,
            name=self.name,
            parse=parse,
        )
