"""OpenAI-compatible upstreams: OpenAI, Azure OpenAI, vLLM, Ollama, llama.cpp, Groq, Together…

The request body is relayed as the client sent it, with only ``model`` replaced by the
deployment's upstream model name and Propylon's own extension field removed. Transport errors
are translated into ``propylon.errors`` here, once, by ``translate_transport_errors``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson

from propylon.errors import (
    UpstreamError,
    UpstreamStreamInterrupted,
)
from propylon.gateway.embedding_input import token_arrays
from propylon.gateway.protocol import (
    NATIVE,
    ChatStream,
    Embeddings,
    JSONObject,
    Ranking,
    upstream_body,
)
from propylon.gateway.providers import text_completions
from propylon.gateway.providers.chat_shape import (
    checked_chunk,
    checked_completion,
    checked_response,
)
from propylon.gateway.providers.transport import (
    Timeouts,
    open_sse_stream,
    post_json,
)
from propylon.gateway.usage import token_count
from propylon.responses import native_stream
from propylon.responses import translation as responses_translation
from propylon.settings import DeploymentConfig

EXTENSION_FIELD = "propylon"


class OpenAIProvider:
    """Chat, embeddings and rerank against one OpenAI-compatible deployment."""

    def __init__(self, deployment: DeploymentConfig, session: aiohttp.ClientSession) -> None:
        if not deployment.base_url:
            raise ValueError(f"deployment {deployment.display_name} needs a base_url")
        self._session = session
        self._model = deployment.model or ""
        self.name = deployment.display_name
        base = deployment.base_url.rstrip("/")
        query = f"?api-version={deployment.api_version}" if deployment.api_version else ""
        self._chat_url = f"{base}/chat/completions{query}"
        self._embeddings_url = f"{base}/embeddings{query}"
        self._completions_url = f"{base}/completions{query}"
        self._rerank_url = f"{base}/rerank{query}"
        self._responses_url = f"{base}/responses{query}"
        self.native_apis = frozenset(deployment.native_apis)
        self._headers = {"Content-Type": "application/json"}
        key = deployment.api_key()
        if key is not None:
            if deployment.api_version:  # Azure authenticates with an api-key header
                self._headers["api-key"] = key.get_secret_value()
            else:
                self._headers["Authorization"] = f"Bearer {key.get_secret_value()}"
        self._timeouts = Timeouts.of(deployment)

    def _body(self, request: JSONObject, **extra: Any) -> bytes:
        body = {k: v for k, v in request.items() if k != EXTENSION_FIELD}
        body["model"] = self._model
        body.update(extra)
        return orjson.dumps(body)

    async def complete(self, request: JSONObject) -> JSONObject:
        answer = await self._post(self._chat_url, self._body(request, stream=False))
        return checked_completion(answer, self.name)

    async def _post(self, url: str, data: bytes) -> JSONObject:
        return await post_json(
            self._session,
            url,
            data=data,
            headers=self._headers,
            timeouts=self._timeouts,
            name=self.name,
        )

    async def stream(self, request: JSONObject) -> ChatStream:
        data = self._body(request, stream=True)
        return await open_sse_stream(
            self._session,
            self._chat_url,
            data=data,
            headers=self._headers,
            timeouts=self._timeouts,
            name=self.name,
            parse=_openai_events,
        )

    async def complete_text(self, request: JSONObject) -> JSONObject:
        """A legacy completion (``POST /completions``), answered in chat's shape."""
        body = text_completions.completions_body(request, self._model)
        body["stream"] = False
        answer = await self._post(self._completions_url, orjson.dumps(body))
        return text_completions.chat_completion(answer, self.name)

    async def stream_text(self, request: JSONObject) -> ChatStream:
        """A streamed legacy completion, its chunks in chat's shape."""
        body = text_completions.completions_body(request, self._model)
        body["stream"] = True

        async def parse(lines: AsyncIterator[bytes], name: str) -> AsyncIterator[JSONObject]:
            async for chunk in _openai_events(lines, name):
                yield text_completions.chat_chunk(chunk, name)

        return await open_sse_stream(
            self._session,
            self._completions_url,
            data=orjson.dumps(body),
            headers=self._headers,
            timeouts=self._timeouts,
            name=self.name,
            parse=parse,
        )

    async def embed(self, texts: list[str], request: JSONObject | None = None) -> Embeddings:
        extra = {k: v for k, v in (request or {}).items() if k in ("dimensions", "user")}
        tokens = token_arrays((request or {}).get("input"))
        relayed = tokens if tokens is not None and len(tokens) == len(texts) else texts
        data = orjson.dumps({"model": self._model, "input": relayed, **extra})
        body = await self._post(self._embeddings_url, data)
        try:
            items = sorted(body["data"], key=lambda item: int(item["index"]))
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise UpstreamError(f"{self.name} returned a malformed embeddings body") from exc
        if len(vectors) != len(texts):
            raise UpstreamError(f"{self.name} returned {len(vectors)} vectors for {len(texts)}")
        usage = body.get("usage")
        prompt = token_count(usage.get("prompt_tokens")) if isinstance(usage, dict) else None
        return Embeddings(vectors, prompt, str(body.get("model", "")))

    async def complete_native(self, api: str, body: JSONObject) -> JSONObject:
        """A client's ``/v1/responses`` body sent as it is (``native_apis: [responses]``);
        the chat completion standing for the reply carries the reply itself."""
        answer = checked_response(
            await self._post(self._responses_url, self._native(body, stream=False)), self.name
        )
        completion = responses_translation.chat_completion(answer)
        completion[EXTENSION_FIELD] = {NATIVE: answer}
        return completion

    async def stream_native(self, api: str, body: JSONObject) -> ChatStream:
        """A client's streamed ``/v1/responses`` body sent as it is; the upstream's typed
        events come back, each on the chat chunk standing for it (``native_stream``)."""
        return await open_sse_stream(
            self._session,
            self._responses_url,
            data=self._native(body, stream=True),
            headers=self._headers,
            timeouts=self._timeouts,
            name=self.name,
            parse=native_stream.native_chunks,
        )

    def _native(self, body: JSONObject, *, stream: bool) -> bytes:
        return orjson.dumps(upstream_body(body, self._model, stream=stream))

    async def rerank(
        self, query: str, documents: list[str], request: JSONObject | None = None
    ) -> Ranking:
        """``POST /rerank`` as vLLM, Jina, Cohere and LiteLLM serve it."""
        top_n = (request or {}).get("top_n")
        body: JSONObject = {"model": self._model, "query": query, "documents": documents}
        if top_n is not None:
            body["top_n"] = top_n
        answer = await self._post(self._rerank_url, orjson.dumps(body))
        try:
            results = [
                (int(item["index"]), float(item["relevance_score"])) for item in answer["results"]
            ]
        except (KeyError, TypeError, ValueError) as exc:
            raise UpstreamError(f"{self.name} returned a malformed rerank body") from exc
        if any(not 0 <= index < len(documents) for index, _ in results):
            raise UpstreamError(f"{self.name} ranked a document that was not sent")
        results.sort(key=lambda item: (-item[1], item[0]))
        usage = answer.get("usage")
        tokens = (
            usage.get("total_tokens", usage.get("prompt_tokens"))
            if isinstance(usage, dict)
            else None
        )
        return Ranking(results, token_count(tokens) or 0, str(answer.get("model", "")))


async def _openai_events(lines: AsyncIterator[bytes], name: str) -> AsyncIterator[JSONObject]:
    """Chunks from an OpenAI SSE body; ends at ``[DONE]``, raises if the body ends before it."""
    async for line in lines:
        if not line.startswith(b"data:"):
            continue  # comments, event names, keep-alives
        payload = line[5:].strip()
        if payload == b"[DONE]":
            return
        try:
            chunk = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:
            raise UpstreamStreamInterrupted(f"{name} sent an unreadable stream event") from exc
        if isinstance(chunk, dict):
            yield checked_chunk(chunk, name)
    raise UpstreamStreamInterrupted(f"{name} closed the stream before it finished")
