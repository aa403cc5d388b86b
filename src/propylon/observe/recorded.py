"""The outermost layer of the request path: times each call and records it.

``RecordedChat`` / ``RecordedEmbeddings`` wrap the rest of the request path (guard, limits,
cache, gateway). When a call ends (returned, raised, or its stream finished or was closed)
the ``Recorder`` builds one ``RequestRecord`` from the call's ``CallOutcome`` (the facts the
inner layers reported and the call's ``Spend``, assembled once by ``access.spend.outcome_of``:
the same figures the limiter settled with),
hands it to the request log (an in-memory append) and the metrics, and sets the GenAI
attributes on the request's span. A call that succeeded is timed when it ends and recorded on
the event loop's next turn, once its response has been handed to the server
(``Recorder.finish_soon``), unless its span is recording.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, TypeVar

import orjson
from opentelemetry import trace
from opentelemetry.trace import INVALID_SPAN, Span, Tracer

from propylon.access.budgets import price_table
from propylon.access.spend import outcome_of
from propylon.errors import InvalidRequest, PropylonError
from propylon.gateway.call import CallInfo, Routed, UsageReported
from propylon.gateway.protocol import (
    ChatService,
    ChatStream,
    Embeddings,
    EmbeddingService,
    Ranking,
    RerankService,
)
from propylon.observe.context import RequestContext, current_request, new_request_id
from propylon.observe.metrics import Metrics
from propylon.observe.record import ContentPolicy, RequestRecord
from propylon.observe.request_log import RequestLog
from propylon.observe.tracing import (
    NO_SPAN,
    call_attributes,
    mark_root,
    request_attributes,
    response_attributes,
)
from propylon.observe.tracing import (
    span as span_of,
)
from propylon.settings import ObserveSettings
from propylon.storable import check_storable

JSONObject = dict[str, Any]
R = TypeVar("R")
METADATA_HEADER = "x-propylon-metadata"
ENDPOINTS = {
    "/v1/chat/completions": "chat",
    "/v1/embeddings": "embeddings",
    "/v1/responses": "responses",
    "/v1/messages": "messages",
    "/v1/messages/count_tokens": "count_tokens",
    "/v1/moderations": "moderations",
    "/v1/completions": "completions",
    "/v1/rerank": "rerank",
}
_MAX_METADATA_KEYS = 32


def parse_metadata(header: str | None, body: Any) -> dict[str, Any] | None:
    """The caller's labels: the ``x-propylon-metadata`` header (a JSON object) overlaid by the
    request body's ``metadata`` object. At most 32 keys are kept."""
    merged: dict[str, Any] = {}
    if header:
        try:
            parsed = orjson.loads(header)
        except orjson.JSONDecodeError:
            parsed = None
        if not isinstance(parsed, dict):
            raise InvalidRequest(
                f"The `{METADATA_HEADER}` header must be a JSON object.", param=METADATA_HEADER
            )
        merged.update(parsed)
    if isinstance(body, dict):
        merged.update(body)
    if not merged:
        return None
    check_storable(merged, "metadata")
    if len(merged) > _MAX_METADATA_KEYS:
        merged = dict(list(merged.items())[:_MAX_METADATA_KEYS])
    return merged


class Recorder:
    """Builds the record of a finished call and hands it on (log, metrics, span)."""

    def __init__(
        self,
        request_log: RequestLog,
        metrics: Metrics,
        settings: ObserveSettings,
        tracer: Tracer | None,
        providers: Mapping[str, str] | None = None,
    ) -> None:
        self.request_log = request_log
        self.metrics = metrics
        self.tracer = tracer
        self._settings = settings
        self._prices = price_table(settings.prices)
        self._providers = providers or {}

    def begin(self, call: CallInfo, request: JSONObject) -> RequestContext | None:
        """Claim the current HTTP request's record; fill in the call's id, model, metadata."""
        ctx = current_request.get()
        claimed = None
        if call.origin == "internal":
            # Its own record, timed from its own start, never the HTTP request's.
            if call.parent_id is None and ctx is not None:
                call.parent_id = ctx.request_id
            if call.request_id is None:
                call.request_id = new_request_id()
            if call.metadata is None:
                call.metadata = parse_metadata(None, request.get("metadata"))
        else:
            if call.metadata is None:
                # May raise (malformed header): the request is then recorded by the middleware.
                header = ctx.metadata_header if ctx is not None else None
                call.metadata = parse_metadata(header, request.get("metadata"))
            if ctx is not None:
                ctx.recorded, claimed = True, ctx
                if call.request_id is None:
                    call.request_id = ctx.request_id
        # What was asked is settled; the first fact: known even if no layer reaches the gateway.
        if call.requested_model is None and isinstance(request.get("model"), str):
            call.report(Routed(request["model"]))
        return claimed

    def policy(self, call: CallInfo) -> ContentPolicy:
        principal = call.principal
        overrides = self._settings.tenant_content_logging
        if principal is not None and overrides:
            chosen = overrides.get(principal.tenant_id) or overrides.get(principal.tenant_name)
            if chosen is not None:
                return chosen
        return self._settings.content_logging

    def finish(
        self,
        call: CallInfo,
        ctx: RequestContext | None,
        span: Span,
        *,
        endpoint: str,
        stream: bool = False,
        prompt: Any = None,
        response: Any = None,
        error: BaseException | None = None,
        ttft_ms: float | None = None,
        extra_upstream_ms: float = 0.0,
        client_ms: float = 0.0,
        client_closed: bool = False,
        ended: float | None = None,
        response_id: str | None = None,
    ) -> RequestRecord:
        """One record for the call, submitted; the span gets the GenAI attributes. ``ended``:
        the ``perf_counter`` time the call ended, when that was before now."""
        now = ended if ended is not None else time.perf_counter()
        started = ctx.started if ctx is not None else call.started
        latency_ms = (now - started) * 1000.0
        outcome = outcome_of(call, self._prices)
        spend = outcome.spend
        upstream_ms = outcome.upstream_ms + extra_upstream_ms
        status, error_type, error_code = _outcome(error)
        if client_closed and error is None:
            status, error_code = 499 if not stream else 200, "client_disconnected"
        principal = call.principal
        policy = self.policy(call)
        record = RequestRecord(
            request_id=call.request_id or (ctx.request_id if ctx else ""),
            created_at=(ctx.started_wall if ctx is not None else time.time() - latency_ms / 1e3),
            endpoint=endpoint,
            status=status,
            latency_ms=latency_ms,
            tenant_id=principal.tenant_id if principal else None,
            key_id=principal.key_id if principal else None,
            key_prefix=principal.key_prefix if principal else None,
            stream=stream,
            requested_model=outcome.requested_model,
            deployment=outcome.deployment,
            attempts=list(outcome.attempts),
            error_type=error_type,
            error_code=error_code,
            content_policy=policy,
            prompt=prompt if policy != "off" else None,
            response=response if policy != "off" else None,
            prompt_tokens=spend.prompt_tokens,
            completion_tokens=spend.completion_tokens,
            cached_tokens=spend.cached_tokens,
            cost_usd=spend.cost_usd,
            cost_saved_usd=spend.saved_usd,
            ttft_ms=ttft_ms,
            overhead_ms=max(latency_ms - upstream_ms - client_ms, 0.0),
            upstream_ms=upstream_ms,
            cache_status=outcome.cache_status,
            cache_similarity=outcome.cache_similarity,
            guard=dict(outcome.guard) or None,
            metadata=call.metadata,
            origin=call.origin,
            parent_id=call.parent_id,
            usage_estimated=spend.estimated,
            response_id=response_id,
            headers=dict(outcome.headers),
        )
        self.request_log.submit(record)
        self.metrics.observe(record)
        self.annotate(call, ctx, span, error_type, error_code)
        return record

    def annotate(
        self,
        call: CallInfo,
        ctx: RequestContext | None,
        span: Span,
        error_type: str | None = None,
        error_code: str | None = None,
    ) -> None:
        """The span's GenAI attributes; a user's request also names its tenant and id, so its
        stored trace is found from the request log."""
        if not span.is_recording():
            return
        outcome = outcome_of(call, self._prices)
        attributes = call_attributes(outcome)
        provider = self._providers.get(outcome.deployment or "")
        if provider is not None:
            attributes["gen_ai.provider.name"] = provider
        if error_type is not None:
            attributes["error.type"] = error_code or error_type
        span.set_attributes(attributes)
        if ctx is not None and call.principal is not None:
            mark_root(
                span, call.principal.tenant_id, f"request:{call.request_id or ctx.request_id}"
            )

    def finish_soon(
        self, call: CallInfo, ctx: RequestContext | None, span: Span, **fields: Any
    ) -> None:
        """``finish`` once the response is on its way: the call's end is taken now, the record
        and the metrics (~50 µs) are made on the event loop's next turn, after the response
        has been handed to the server, so the client does not wait for them. A recording span
        gets its attributes now: they must be set before it ends."""
        ended = time.perf_counter()
        self.annotate(call, ctx, span)
        asyncio.get_running_loop().call_soon(
            functools.partial(self.finish, call, ctx, INVALID_SPAN, ended=ended, **fields)
        )

    def finish_unserved(
        self,
        ctx: RequestContext,
        call: CallInfo | None,
        status: int,
        error_type: str | None,
        error_code: str | None,
    ) -> RequestRecord:
        """The record of a request that never reached the request path (refused by its route:
        bad JSON, failed authentication…). Called by the HTTP middleware."""
        latency_ms = (time.perf_counter() - ctx.started) * 1000.0
        principal = call.principal if call is not None else None
        record = RequestRecord(
            request_id=ctx.request_id,
            created_at=ctx.started_wall,
            endpoint=ENDPOINTS.get(ctx.path, ctx.path),
            status=status,
            latency_ms=latency_ms,
            tenant_id=principal.tenant_id if principal else None,
            key_id=principal.key_id if principal else None,
            key_prefix=principal.key_prefix if principal else None,
            error_type=error_type,
            error_code=error_code,
            overhead_ms=latency_ms,
            upstream_ms=0.0,
        )
        self.request_log.submit(record)
        self.metrics.observe(record)
        return record


class RecordedChat:
    """Records every chat call of the layers it wraps (see module docstring)."""

    def __init__(self, inner: ChatService, recorder: Recorder) -> None:
        self._inner = inner
        self._recorder = recorder

    async def complete(self, request: JSONObject, call: CallInfo | None = None) -> JSONObject:
        call = call or CallInfo()
        recorder = self._recorder
        ctx = recorder.begin(call, request)
        with span_of(
            recorder.tracer,
            _span_name("chat", request),
            lambda: request_attributes("chat", request),
        ) as span:
            try:
                result = await self._inner.complete(request, call)
            except BaseException as exc:
                recorder.finish(
                    call, ctx, span, endpoint=call.api, prompt=request.get("messages"), error=exc
                )
                raise
            if span.is_recording():
                span.set_attributes(response_attributes(result))
            recorder.finish_soon(
                call,
                ctx,
                span,
                endpoint=call.api,
                prompt=request.get("messages"),
                response=_answer(result),
                response_id=call.response_id or _text(result.get("id")),
            )
            return result

    async def stream(self, request: JSONObject, call: CallInfo | None = None) -> ChatStream:
        call = call or CallInfo()
        recorder = self._recorder
        ctx = recorder.begin(call, request)
        tracer = recorder.tracer
        span = (
            tracer.start_span(
                _span_name("chat", request), attributes=request_attributes("chat", request)
            )
            if tracer is not None
            else INVALID_SPAN
        )
        try:
            with trace.use_span(span, end_on_exit=False) if tracer is not None else NO_SPAN:
                inner = await self._inner.stream(request, call)
        except BaseException as exc:
            recorder.finish(
                call,
                ctx,
                span,
                endpoint=call.api,
                stream=True,
                prompt=request.get("messages"),
                error=exc,
            )
            span.end()
            raise
        started = ctx.started if ctx is not None else call.started
        ttft_ms = (time.perf_counter() - started) * 1000.0
        return _RecordedStream(inner, recorder, call, ctx, span, request, ttft_ms)


class _RecordedStream:
    """Passes chunks through, collecting the answer and the time spent waiting on either
    side; the record is completed when the stream ends, fails or is closed."""

    def __init__(
        self,
        inner: ChatStream,
        recorder: Recorder,
        call: CallInfo,
        ctx: RequestContext | None,
        span: Span,
        request: JSONObject,
        ttft_ms: float,
    ) -> None:
        self._inner = inner
        self._recorder = recorder
        self._call = call
        self._ctx = ctx
        self._span = span
        self._request = request
        self._ttft_ms = ttft_ms
        self._pieces: list[str] = []
        self._tools: dict[int, list[str]] = {}
        self._response_id: str | None = None
        self._upstream_s = 0.0  # waiting for the next chunk
        self._client_s = 0.0  # suspended at `yield` while the client is written to
        self._done = False

    def __aiter__(self) -> AsyncIterator[JSONObject]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[JSONObject]:
        iterator = self._inner.__aiter__()
        clock = time.perf_counter
        try:
            while True:
                waited = clock()
                try:
                    chunk = await iterator.__anext__()
                except StopAsyncIteration:
                    break
                got = clock()
                self._upstream_s += got - waited
                self._collect(chunk)
                yield chunk
                self._client_s += clock() - got
        except (Exception, asyncio.CancelledError) as exc:
            self._finish(error=exc)
            raise
        self._finish()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._finish(client_closed=True)

    def _collect(self, chunk: JSONObject) -> None:
        if self._response_id is None:
            self._response_id = self._call.response_id or _text(chunk.get("id"))
        choices = chunk.get("choices")
        if not choices:
            return
        delta = choices[0].get("delta") or {}
        content = delta.get("content")
        if content:
            self._pieces.append(content)
        for tool in delta.get("tool_calls") or ():
            function = tool.get("function") or {}
            piece = (function.get("name") or "") + (function.get("arguments") or "")
            self._tools.setdefault(tool.get("index", 0), []).append(piece)

    def _finish(self, error: BaseException | None = None, client_closed: bool = False) -> None:
        if self._done:
            return
        self._done = True
        if isinstance(error, asyncio.CancelledError):
            error, client_closed = None, True  # the client went away mid-stream
        response: Any = "".join(self._pieces)
        if self._tools:
            response = {
                "content": response,
                "tool_calls": ["".join(p) for _, p in sorted(self._tools.items())],
            }
        self._recorder.finish_soon(
            self._call,
            self._ctx,
            self._span,
            endpoint=self._call.api,
            stream=True,
            prompt=self._request.get("messages"),
            response=response,
            error=error,
            ttft_ms=self._ttft_ms,
            extra_upstream_ms=self._upstream_s * 1000.0,
            client_ms=self._client_s * 1000.0,
            client_closed=client_closed,
            response_id=self._response_id,
        )
        self._span.end()


class RecordedEmbeddings:
    """Records every embeddings call of the layers it wraps."""

    def __init__(self, inner: EmbeddingService, recorder: Recorder) -> None:
        self._inner = inner
        self._recorder = recorder

    async def embed(
        self, texts: list[str], request: JSONObject | None = None, call: CallInfo | None = None
    ) -> Embeddings:
        call = call or CallInfo(endpoint="embeddings")
        return await _recorded(
            self._recorder,
            call,
            request or {},
            "embeddings",
            texts,
            lambda: self._inner.embed(texts, request, call),
            lambda result: result.prompt_tokens or 0,
        )


class RecordedRerank:
    """Records every rerank call of the layers it wraps (endpoint ``rerank``)."""

    def __init__(self, inner: RerankService, recorder: Recorder) -> None:
        self._inner = inner
        self._recorder = recorder

    async def rerank(
        self,
        query: str,
        documents: list[str],
        request: JSONObject | None = None,
        call: CallInfo | None = None,
    ) -> Ranking:
        call = call or CallInfo(endpoint="rerank")
        return await _recorded(
            self._recorder,
            call,
            request or {},
            "rerank",
            {"query": query, "documents": documents},
            lambda: self._inner.rerank(query, documents, request, call),
            lambda result: result.tokens,
        )


async def _recorded(
    recorder: Recorder,
    call: CallInfo,
    body: JSONObject,
    endpoint: str,
    prompt: Any,
    run: Callable[[], Awaitable[R]],
    tokens: Callable[[R], int],
) -> R:
    """One record (and span) for a call whose usage is input tokens only."""
    ctx = recorder.begin(call, body)
    with span_of(
        recorder.tracer, _span_name(endpoint, body), lambda: request_attributes(endpoint, body)
    ) as span:
        try:
            result = await run()
        except BaseException as exc:
            recorder.finish(call, ctx, span, endpoint=endpoint, prompt=prompt, error=exc)
            raise
        if not call.usage_reported:  # a service that is not the gateway
            call.report(UsageReported({"prompt_tokens": tokens(result), "completion_tokens": 0}))
        recorder.finish_soon(call, ctx, span, endpoint=endpoint, prompt=prompt)
        return result


def _outcome(error: BaseException | None) -> tuple[int, str | None, str | None]:
    """HTTP status, OpenAI error type and code of a call's ending."""
    if error is None:
        return 200, None, None
    if isinstance(error, PropylonError):
        return error.http_status, error.error_type, error.code
    if isinstance(error, asyncio.CancelledError):
        return 499, None, "client_disconnected"
    return 500, "server_error", "internal_error"


def _answer(result: JSONObject) -> Any:
    """The answer's text when there is one plain message; else the messages."""
    choices = result.get("choices") or []
    if len(choices) == 1 and isinstance(choices[0], dict):
        message = choices[0].get("message") or {}
        if isinstance(message.get("content"), str) and not message.get("tool_calls"):
            return message["content"]
    return [c.get("message") for c in choices if isinstance(c, dict)]


def _span_name(operation: str, request: JSONObject) -> str:
    model = request.get("model")
    return f"{operation} {model}" if isinstance(model, str) else operation


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
