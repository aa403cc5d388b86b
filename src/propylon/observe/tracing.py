"""OpenTelemetry traces with the GenAI semantic conventions.

Tracing is configured by the standard ``OTEL_*`` variables: it exports when
``OTEL_TRACES_EXPORTER`` (``otlp`` or ``console``) or an ``OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT``
is set, and ``OTEL_SDK_DISABLED`` is not ``true``; the SDK itself reads the rest
(``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER``, ``OTEL_BSP_*``,
``OTEL_EXPORTER_OTLP_HEADERS``…). Otherwise spans go to the global tracer provider, a no-op
unless the host application installed one. A provider handed in explicitly (tests, embedding
applications) wins over both. The spans are also kept in PostgreSQL for the console
(``observe.store_traces``, on by default: ``span_store.py``), made by ``StoredTracer``
(``stored_tracer.py``: the same spans, made for about a tenth of the SDK's CPU,
26 against 256 µs for a request's five, hand-timed: docs/benchmarks.md) when nothing else
collects them. With neither (no ``OTEL_*`` exporter, no provider, no global
provider, ``store_traces`` off), ``open_tracing`` yields None and the request path makes no
span at all: OpenTelemetry's no-op tracer still costs about 5 µs a span, and a request makes
four.

Spans: one per ``/v1`` request (``chat gpt-4o-mini``, from ``recorded.py``), a child per
layer that is wrapped in ``TracedLayer`` (``propylon.cache``, ``propylon.limits``…), and a
client span per provider attempt (``gateway/service.py``). The conventions have no attribute
for a gateway cache, so hits carry ``propylon.cache.status`` and
``propylon.cache.similarity``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from opentelemetry import trace
from opentelemetry.trace import (
    INVALID_SPAN,
    NoOpTracerProvider,
    ProxyTracerProvider,
    Span,
    SpanKind,
    Tracer,
    TracerProvider,
)

from propylon.gateway.protocol import (
    ChatService,
    ChatStream,
    Embeddings,
    EmbeddingService,
    Ranking,
    RerankService,
)
from propylon.observe.stored_tracer import StoredTracer, needs_sdk

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor

    from propylon.gateway.call import CallInfo, CallOutcome

log = logging.getLogger(__name__)

TRACER_NAME = "propylon"
TENANT = "propylon.tenant_id"
SUBJECT = "propylon.subject"
T = TypeVar("T")
JSONObject = dict[str, Any]

# OpenAI request fields -> GenAI request attributes.
_REQUEST_ATTRIBUTES = {
    "max_tokens": "gen_ai.request.max_tokens",
    "max_completion_tokens": "gen_ai.request.max_tokens",
    "temperature": "gen_ai.request.temperature",
    "top_p": "gen_ai.request.top_p",
    "frequency_penalty": "gen_ai.request.frequency_penalty",
    "presence_penalty": "gen_ai.request.presence_penalty",
    "seed": "gen_ai.request.seed",
}


def _env_enabled(env: Mapping[str, str]) -> bool:
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    exporter = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter == "none":
        return False
    return bool(
        exporter
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


@contextmanager
def open_tracing(
    provider: TracerProvider | None = None,
    env: Mapping[str, str] | None = None,
    store: SpanProcessor | None = None,
) -> Iterator[Tracer | None]:
    """The tracer for this app: from ``provider``, else from ``OTEL_*``, else the global one
    when one is installed, else (with ``store``) a ``StoredTracer`` feeding the store alone
    (the SDK's own provider when a variable asks for sampling or limits); None when nothing
    would collect the spans. ``store`` (the spans kept for the console) is added to whichever
    SDK provider is used. A provider built here is flushed and shut down on exit."""
    if provider is not None:
        _add(provider, store)
        yield provider.get_tracer(TRACER_NAME)
        return
    environ = os.environ if env is None else env
    if _env_enabled(environ):
        sdk_provider = _sdk_provider(environ)
    else:
        installed = trace.get_tracer_provider()
        if not isinstance(installed, ProxyTracerProvider | NoOpTracerProvider):
            _add(installed, store)
            yield installed.get_tracer(TRACER_NAME)
            return
        if store is None:
            yield None
            return
        if not needs_sdk(environ):
            try:
                yield StoredTracer(store)
            finally:
                store.shutdown()
            return
        sdk_provider = _sdk_provider(environ, exporters=False)
    _add(sdk_provider, store)
    try:
        yield sdk_provider.get_tracer(TRACER_NAME)
    finally:
        sdk_provider.shutdown()


def _add(provider: TracerProvider, store: SpanProcessor | None) -> None:
    add = getattr(provider, "add_span_processor", None)  # the SDK's; an API-only one has none
    if store is not None and add is not None:
        add(store)


def _sdk_provider(env: Mapping[str, str], *, exporters: bool = True) -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "propylon"}
    provider = SDKTracerProvider(resource=Resource.create(attributes))
    names = (env.get("OTEL_TRACES_EXPORTER") or "otlp").split(",") if exporters else []
    for name in names:
        exporter: SpanExporter
        name = name.strip().lower()
        if name == "console":
            exporter = ConsoleSpanExporter()
        elif name == "otlp":
            protocol = env.get(
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "")
            )
            if protocol and protocol != "http/protobuf":
                log.warning(
                    "tracing: only the http/protobuf OTLP protocol is bundled; using it",
                    extra={"requested": protocol},
                )
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            log.warning("tracing: unknown OTEL_TRACES_EXPORTER ignored", extra={"name": name})
            continue
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def mark_root(span: Span, tenant_id: str | None, subject: str) -> None:
    """Name the tenant and the request (``request:<id>``), run (``run:<id>``) or job
    (``job:<id>``) that ``span``'s trace is about: how a stored trace is found and who may
    read it."""
    if tenant_id is not None and span.is_recording():
        span.set_attributes({TENANT: tenant_id, SUBJECT: subject})


class _NoSpan:
    """What ``span`` gives when tracing is off: OpenTelemetry's invalid span, not attached to
    the context."""

    __slots__ = ()

    def __enter__(self) -> Span:
        return INVALID_SPAN

    def __exit__(self, *exc: object) -> None:
        return None


NO_SPAN = _NoSpan()


def span(
    tracer: Tracer | None,
    name: str,
    attributes: Callable[[], dict[str, Any]] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
) -> AbstractContextManager[Span]:
    """``tracer.start_as_current_span(name, …)``, or ``NO_SPAN`` when tracing is off (then
    ``attributes`` is not even called)."""
    if tracer is None:
        return NO_SPAN
    return tracer.start_as_current_span(
        name, kind=kind, attributes=attributes() if attributes is not None else None
    )


def request_attributes(operation: str, request: JSONObject | None) -> dict[str, Any]:
    """GenAI attributes known before the call: operation, model, sampling parameters."""
    attributes: dict[str, Any] = {"gen_ai.operation.name": operation}
    if not request:
        return attributes
    model = request.get("model")
    if isinstance(model, str):
        attributes["gen_ai.request.model"] = model
    for field, name in _REQUEST_ATTRIBUTES.items():
        value = request.get(field)
        if isinstance(value, int | float) and not isinstance(value, bool):
            attributes[name] = value
    return attributes


def response_attributes(response: JSONObject | None) -> dict[str, Any]:
    """GenAI attributes of a ``chat.completion``: id, model, finish reasons."""
    if not response:
        return {}
    attributes: dict[str, Any] = {}
    if isinstance(response.get("id"), str):
        attributes["gen_ai.response.id"] = response["id"]
    if isinstance(response.get("model"), str):
        attributes["gen_ai.response.model"] = response["model"]
    reasons = [
        c["finish_reason"]
        for c in response.get("choices") or ()
        if isinstance(c, dict) and isinstance(c.get("finish_reason"), str)
    ]
    if reasons:
        attributes["gen_ai.response.finish_reasons"] = reasons
    return attributes


def call_attributes(outcome: CallOutcome | CallInfo) -> dict[str, Any]:
    """What the layers reported on a call: route, cache; and its spend: usage, cost (once the
    call has ended: a layer's span may end before, with the facts so far)."""
    attributes: dict[str, Any] = {"propylon.attempts": outcome.calls}
    if outcome.deployment is not None:
        attributes["propylon.deployment"] = outcome.deployment
    if outcome.cache_status is not None:
        attributes["propylon.cache.status"] = outcome.cache_status
        attributes["propylon.cache.hit"] = outcome.cache_status.startswith("hit")
    if outcome.cache_similarity is not None:
        attributes["propylon.cache.similarity"] = outcome.cache_similarity
    spend = outcome.spend
    if spend is None:
        return attributes
    for value, name in (
        (spend.prompt_tokens, "gen_ai.usage.input_tokens"),
        (spend.completion_tokens, "gen_ai.usage.output_tokens"),
        (spend.cached_tokens, "gen_ai.usage.cache_read.input_tokens"),
        (spend.cost_usd, "propylon.cost_usd"),
    ):
        if value is not None:
            attributes[name] = value
    return attributes


class TracedLayer:
    """A child span (``propylon.<layer>``) around one layer of the request path.

    Wrap a layer where it is composed (``TracedLayer(CacheLayer(...), tracer, "cache")``); the
    span covers that layer and everything inside it, so the spans nest like the layers do.
    """

    def __init__(self, inner: Any, tracer: Tracer, layer: str) -> None:
        self._inner = inner
        self._tracer = tracer
        self._name = f"propylon.{layer}"

    async def complete(self, request: JSONObject, call: CallInfo | None = None) -> JSONObject:
        inner: ChatService = self._inner
        return await self._spanned(lambda: inner.complete(request, call), call)

    async def stream(self, request: JSONObject, call: CallInfo | None = None) -> ChatStream:
        inner: ChatService = self._inner
        return await self._spanned(lambda: inner.stream(request, call), call)

    async def embed(
        self, texts: list[str], request: JSONObject | None = None, call: CallInfo | None = None
    ) -> Embeddings:
        inner: EmbeddingService = self._inner
        return await self._spanned(lambda: inner.embed(texts, request, call), call)

    async def rerank(
        self,
        query: str,
        documents: list[str],
        request: JSONObject | None = None,
        call: CallInfo | None = None,
    ) -> Ranking:
        inner: RerankService = self._inner
        return await self._spanned(lambda: inner.rerank(query, documents, request, call), call)

    async def _spanned(self, run: Callable[[], Awaitable[T]], call: CallInfo | None) -> T:
        with self._tracer.start_as_current_span(self._name) as span:
            result = await run()
            if call is not None:
                span.set_attributes(call_attributes(call))
            return result
