"""The gateway: one service that routes chat, embeddings and rerank requests to deployments.

It composes small parts — the router (order of deployments), the retry policy (same deployment
again?), a circuit breaker per deployment (skip it without a call?) — and satisfies
``ChatModel``, ``EmbeddingModel`` and ``RerankModel`` itself (``request["model"]`` is a public
model name), so the rest of Propylon calls models through it and inherits all of that.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TypeGuard, TypeVar, cast

from opentelemetry.trace import SpanKind, Tracer

from propylon.errors import (
    AllDeploymentsUnavailable,
    InvalidRequest,
    PropylonError,
    UpstreamStreamInterrupted,
)
from propylon.gateway.call import (
    Answered,
    Attempt,
    CallInfo,
    FirstToken,
    Routed,
    UsageReported,
)
from propylon.gateway.circuit_breaker import BreakerState, CircuitBreaker
from propylon.gateway.context_window import ContextWindowCheck
from propylon.gateway.protocol import (
    ChatModel,
    ChatStream,
    EmbeddingModel,
    Embeddings,
    JSONObject,
    NativeModel,
    Ranking,
    RerankModel,
    TextCompletionModel,
    native_answer,
    native_body,
)
from propylon.gateway.registry import ModelRegistry
from propylon.gateway.retry import RetryPolicy
from propylon.gateway.router import Deployment, Router
from propylon.gateway.usage import (
    answer_texts,
    asking_usage,
    chunk_texts,
    estimated_input_tokens,
    estimated_usage,
    upstream_usage,
    wants_usage,
)
from propylon.gateway.validation import validate_chat_request
from propylon.settings import ModelConfig
from propylon.tokens import TokenCounter

T = TypeVar("T")
A = TypeVar("A")
Sleep = Callable[[float], Awaitable[None]]


class Gateway:
    """Validates, resolves the model, then tries its deployments with retries and fallback."""

    def __init__(
        self,
        registry: ModelRegistry,
        chat: Mapping[str, Sequence[Deployment[ChatModel]]],
        embeddings: Mapping[str, Sequence[Deployment[EmbeddingModel]]],
        *,
        rerank: Mapping[str, Sequence[Deployment[RerankModel]]] | None = None,
        router: Router | None = None,
        retry: RetryPolicy | None = None,
        context_window: ContextWindowCheck | None = None,
        max_messages: int = 2048,
        counter: TokenCounter | None = None,
        sleep: Sleep = asyncio.sleep,
        tracer: Tracer | None = None,
    ) -> None:
        self._registry = registry
        self._chat = chat
        self._embeddings = embeddings
        self._rerank = rerank or {}
        self._router = router or Router()
        self._retry = retry or RetryPolicy()
        self._context_window = context_window
        self._max_messages = max_messages
        self._counter = counter or TokenCounter()
        self._sleep = sleep
        self._tracer = tracer  # None: tracing is off, no span is made

    @property
    def registry(self) -> ModelRegistry:
        return self._registry

    def breakers(self) -> dict[str, CircuitBreaker]:
        """Every deployment's breaker by display name (for metrics and admin views)."""
        out = {d.name: d.breaker for group in self._chat.values() for d in group}
        out.update({d.name: d.breaker for group in self._embeddings.values() for d in group})
        out.update({d.name: d.breaker for group in self._rerank.values() for d in group})
        return out

    async def complete(self, request: JSONObject, call: CallInfo | None = None) -> JSONObject:
        call = call or CallInfo()
        model = self._prepare(request, call)
        if call.api == "completions":
            result = await self._route(
                model, self._text_deployments(model), call, lambda a: a.complete_text(request)
            )
        else:
            native = native_body(request)

            async def invoke(adapter: ChatModel) -> JSONObject:
                if native is not None and _speaks(adapter, call.api):
                    return await adapter.complete_native(call.api, native)  # passthrough
                return await adapter.complete(request)

            result = await self._route(model, self._chat[model.name], call, invoke)
        usage = upstream_usage(result.get("usage"))
        if usage is not None:
            call.report(UsageReported(usage))
            return {**result, "usage": usage}
        answer = "".join(answer_texts(result))
        estimate = estimated_usage(self._counter, request, model.name, answer)
        call.report(UsageReported(estimate, estimated=True))
        # Counts the upstream sent but we cannot trust reach the client as our estimate.
        return {**result, "usage": estimate} if result.get("usage") is not None else result

    async def stream(self, request: JSONObject, call: CallInfo | None = None) -> ChatStream:
        call = call or CallInfo()
        model = self._prepare(request, call)
        breakers: list[CircuitBreaker] = []

        upstream_request = asking_usage(request)  # every token counted, asked for or not
        native = native_body(request)

        async def open_stream(deployment: Deployment[ChatModel]) -> ChatStream:
            adapter = deployment.adapter
            if native is not None and _speaks(adapter, call.api):
                stream = await adapter.stream_native(call.api, native)  # passthrough
            else:
                stream = await adapter.stream(upstream_request)
            breakers.append(deployment.breaker)
            return stream

        async def open_text_stream(deployment: Deployment[TextCompletionModel]) -> ChatStream:
            stream = await deployment.adapter.stream_text(upstream_request)
            breakers.append(deployment.breaker)
            return stream

        if call.api == "completions":
            stream = await self._route_deployments(
                model, self._text_deployments(model), call, open_text_stream
            )
        else:
            stream = await self._route_deployments(model, self._chat[model.name], call, open_stream)
        call.report(FirstToken())

        def estimate(answer: str) -> dict[str, int]:
            return estimated_usage(self._counter, request, model.name, answer)

        return _WatchedStream(stream, breakers[-1], call, wants_usage(request), estimate)

    async def embed(
        self, texts: list[str], request: JSONObject | None = None, call: CallInfo | None = None
    ) -> Embeddings:
        call = call or CallInfo()
        model = self._named_model(request, call, "embeddings")
        result = await self._route(
            model, self._embeddings[model.name], call, lambda a: a.embed(texts, request)
        )
        estimated = result.prompt_tokens is None
        if estimated:
            result.prompt_tokens = estimated_input_tokens(self._counter, texts, request, model.name)
        usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": 0}
        call.report(UsageReported(usage, estimated=estimated))
        return result

    async def rerank(
        self,
        query: str,
        documents: list[str],
        request: JSONObject | None = None,
        call: CallInfo | None = None,
    ) -> Ranking:
        call = call or CallInfo()
        model = self._named_model(request, call, "rerank")
        ranking = await self._route(
            model, self._rerank[model.name], call, lambda a: a.rerank(query, documents, request)
        )
        call.report(UsageReported({"prompt_tokens": ranking.tokens, "completion_tokens": 0}))
        return ranking

    def _named_model(self, request: JSONObject | None, call: CallInfo, kind: str) -> ModelConfig:
        name = (request or {}).get("model")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(
                "`model` is required and must be a non-empty string.", param="model"
            )
        model = self._registry.resolve(name, kind=kind)
        call.report(Routed(name, model.name))
        return model

    def _text_deployments(self, model: ModelConfig) -> list[Deployment[TextCompletionModel]]:
        """The model's deployments that have the legacy completions API (none: a 400)."""
        found: list[Deployment[TextCompletionModel]] = []
        for deployment in self._chat[model.name]:
            if isinstance(deployment.adapter, TextCompletionModel):
                found.append(cast("Deployment[TextCompletionModel]", deployment))
        if not found:
            raise InvalidRequest(
                f"`{model.name}` has no deployment with the legacy completions API; "
                "use /v1/chat/completions.",
                param="model",
                code="completions_not_supported",
            )
        return found

    def check_request(self, request: JSONObject) -> None:
        """The cheapest refusals, run first on the request path (``PreflightChat``): the
        request's shape and its message count. Nothing is counted or embedded yet."""
        validate_chat_request(request, max_messages=self._max_messages)

    def check_route(self, request: JSONObject) -> ModelConfig:
        """What the gateway would refuse before calling out, for a request ``check_request``
        passed: an unknown model, a prompt past the context window, every deployment's breaker
        open. Run before the guard's classifier (``PreflightChat``) and again here."""
        model = self._fitting_model(request)
        deployments = self._chat[model.name]
        if deployments and all(d.breaker.state is BreakerState.OPEN for d in deployments):
            raise self._unavailable(model, deployments)
        return model

    def _fitting_model(self, request: JSONObject) -> ModelConfig:
        model = self._registry.resolve(request["model"], kind="chat")
        if self._context_window is not None:
            self._context_window.check(model, request)
        return model

    def _prepare(self, request: JSONObject, call: CallInfo) -> ModelConfig:
        self.check_request(request)
        # Named before the context-window check, so a refusal there is recorded with its model.
        call.report(
            Routed(request["model"], self._registry.resolve(request["model"], kind="chat").name)
        )
        return self._fitting_model(request)  # open breakers: skipped (and shown) by routing

    def _unavailable(
        self, model: ModelConfig, deployments: Sequence[Deployment[A]]
    ) -> AllDeploymentsUnavailable:
        wait = min(d.breaker.retry_after() for d in deployments)
        return AllDeploymentsUnavailable(
            f"Every deployment of `{model.name}` is failing and temporarily skipped; "
            "try again shortly.",
            retry_after=max(wait, 1.0),
        )

    async def _route(
        self,
        model: ModelConfig,
        deployments: Sequence[Deployment[A]],
        call: CallInfo,
        invoke: Callable[[A], Awaitable[T]],
    ) -> T:
        return await self._route_deployments(model, deployments, call, lambda d: invoke(d.adapter))

    async def _route_deployments(
        self,
        model: ModelConfig,
        deployments: Sequence[Deployment[A]],
        call: CallInfo,
        invoke: Callable[[Deployment[A]], Awaitable[T]],
    ) -> T:
        """Each deployment in router order: skip it if its breaker is open, else call it up to
        ``retry.attempts`` times; a non-retryable error returns at once."""
        last: PropylonError | None = None
        attempted = False
        for deployment in self._router.order(model, deployments):
            breaker = deployment.breaker
            for attempt in range(self._retry.attempts):
                if not breaker.allow():
                    call.report(Attempt(deployment.name, "skipped", 0.0))
                    break
                started = time.perf_counter()
                attempted = True
                try:
                    result = await self._attempt(model, deployment, invoke)
                except PropylonError as exc:
                    call.report(Attempt.since(deployment.name, exc.code or "error", started))
                    if not exc.retryable:
                        breaker.release()
                        raise
                    breaker.record_failure()
                    if not self._retry.falls_back(exc):
                        raise
                    last = exc
                    delay = self._retry.delay(attempt, exc)
                    if delay is None:
                        break
                    await self._sleep(delay)
                    continue
                except BaseException:
                    breaker.release()  # cancelled: no verdict on the provider
                    call.report(Attempt.since(deployment.name, "cancelled", started))
                    raise
                breaker.record_success()
                call.report(
                    Attempt.since(deployment.name, "ok", started), Answered(deployment.name)
                )
                return result
        if last is None or not attempted:
            raise self._unavailable(model, deployments)
        raise last

    async def _attempt(
        self,
        model: ModelConfig,
        deployment: Deployment[A],
        invoke: Callable[[Deployment[A]], Awaitable[T]],
    ) -> T:
        """One upstream call, in a client span with the GenAI attributes."""
        config = deployment.config
        if self._tracer is None:
            return await invoke(deployment)
        with self._tracer.start_as_current_span(
            f"{model.kind} {config.model or model.name}",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": model.kind,
                "gen_ai.provider.name": config.provider,
                "gen_ai.request.model": config.model or model.name,
                "propylon.deployment": deployment.name,
            },
        ) as span:
            try:
                return await invoke(deployment)
            except PropylonError as exc:
                span.set_attribute("error.type", exc.code or type(exc).__name__)
                raise


def _relays(chunk: JSONObject) -> bool:
    return native_answer(chunk) is not None


def _speaks(adapter: object, api: str) -> TypeGuard[NativeModel]:
    """Whether ``adapter`` takes the client's own body of ``api`` (passthrough)."""
    return isinstance(adapter, NativeModel) and api in adapter.native_apis


class _WatchedStream:
    """Passes chunks through; counts a mid-stream break against the deployment's breaker.

    Records the stream's usage in the call: the upstream's usage chunk (always asked for),
    dropped from what the client sees unless it asked for it; without one, an estimate of the
    text relayed (content, tool calls, reasoning), marked ``usage_estimated``. A
    passthrough's chunks are never dropped: each carries an upstream event to relay.
    """

    def __init__(
        self,
        inner: ChatStream,
        breaker: CircuitBreaker,
        call: CallInfo,
        client_wants_usage: bool,
        estimate: Callable[[str], dict[str, int]],
    ) -> None:
        self._inner = inner
        self._breaker = breaker
        self._call = call
        self._client_wants_usage = client_wants_usage
        self._estimate = estimate
        self._texts: list[str] = []
        self._usage_seen = False

    def __aiter__(self) -> AsyncIterator[JSONObject]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[JSONObject]:
        try:
            async for chunk in self._inner:
                self._texts.extend(chunk_texts(chunk))
                usage = chunk.get("usage")
                if isinstance(usage, dict):  # {}: the upstream's counts were unknown
                    chunk = {**chunk, "usage": self._usage_of(usage)}
                if not self._client_wants_usage and "usage" in chunk and not _relays(chunk):
                    if not chunk.get("choices"):
                        continue  # the usage-only chunk the client did not ask for
                    chunk = {k: v for k, v in chunk.items() if k != "usage"}
                yield chunk
        except UpstreamStreamInterrupted:
            self._breaker.record_failure()
            raise
        finally:
            self._settle_usage()

    def _usage_of(self, usage: JSONObject) -> JSONObject:
        """The stream's usage, reported once: the upstream's if sane, else an estimate of
        the text relayed so far (the usage chunk comes last)."""
        sane = upstream_usage(usage)
        self._usage_seen = True
        if sane is not None:
            self._call.report(UsageReported(sane))
            return sane
        estimate = self._estimate("".join(self._texts))
        self._call.report(UsageReported(estimate, estimated=True))
        return dict(estimate)

    def _settle_usage(self) -> None:
        if not self._usage_seen:
            self._usage_seen = True  # ended and closed: reported once
            self._call.report(UsageReported(self._estimate("".join(self._texts)), estimated=True))

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._settle_usage()
