"""The observe part as the composition root builds it: request log, metrics, tracer, and the
wrappers and queries the rest of Propylon uses."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from opentelemetry.trace import Tracer, TracerProvider

from propylon.db.database import Database
from propylon.gateway.circuit_breaker import CircuitBreaker
from propylon.gateway.protocol import ChatService, EmbeddingService, RerankService
from propylon.observe.feedback import Feedback, post_feedback
from propylon.observe.log_detail import log_detail
from propylon.observe.log_export import export_logs
from propylon.observe.logs_query import LogFilter, list_logs
from propylon.observe.metrics import Metrics
from propylon.observe.recorded import RecordedChat, RecordedEmbeddings, RecordedRerank, Recorder
from propylon.observe.request_log import RequestLog
from propylon.observe.span_store import SpanStore
from propylon.observe.stats import prompt_versions, request_stats
from propylon.observe.trace_query import find_traces, read_trace
from propylon.observe.tracing import TracedLayer, open_tracing
from propylon.principal import Principal
from propylon.settings import Settings


@dataclass(slots=True)
class Observability:
    """Everything observe offers the app. ``record_chat`` / ``record_embeddings`` wrap the
    request path (outermost); ``traced`` wraps one inner layer in a child span."""

    database: Database
    request_log: RequestLog
    metrics: Metrics
    recorder: Recorder
    tracer: Tracer | None  # None: tracing is off
    spans: SpanStore | None = None  # None: traces are not kept (`observe.store_traces`)
    access_log: bool = True
    logs_timeout_s: float | None = None  # a GET /v1/logs query running longer is stopped

    def record_chat(self, inner: ChatService) -> ChatService:
        return RecordedChat(inner, self.recorder)

    def record_embeddings(self, inner: EmbeddingService) -> EmbeddingService:
        return RecordedEmbeddings(inner, self.recorder)

    def record_rerank(self, inner: RerankService) -> RerankService:
        return RecordedRerank(inner, self.recorder)

    def traced(self, inner: Any, layer: str) -> Any:
        """``inner`` (a ChatService or EmbeddingService) inside a ``propylon.<layer>`` span;
        ``inner`` itself when tracing is off."""
        if self.tracer is None:
            return inner
        return TracedLayer(inner, self.tracer, layer)

    def watch_breakers(self, source: Callable[[], Mapping[str, CircuitBreaker]]) -> None:
        self.metrics.watch_breakers(source)

    async def logs(self, principal: Principal, filter: LogFilter) -> dict[str, Any]:
        return await list_logs(self.database, principal, filter, self.logs_timeout_s)

    async def export(
        self, principal: Principal, filter: LogFilter, format: str
    ) -> AsyncIterator[bytes]:
        return await export_logs(self.database, principal, filter, format)

    async def log(self, principal: Principal, log_id: str) -> dict[str, Any]:
        return await log_detail(self.database, principal, log_id)

    async def trace(self, principal: Principal, trace_id: str) -> dict[str, Any]:
        return await read_trace(self.database, principal, trace_id)

    async def traces(self, principal: Principal, subject: str) -> dict[str, Any]:
        return await find_traces(self.database, principal, subject)

    async def feedback(self, principal: Principal, feedback: Feedback) -> dict[str, Any]:
        return await post_feedback(self.database, principal, feedback, self.request_log.flush)

    async def stats(
        self, principal: Principal, window: timedelta, tenant_id: str | None = None
    ) -> dict[str, Any]:
        return await request_stats(self.database, principal, window, tenant_id=tenant_id)

    async def prompt_versions(
        self,
        principal: Principal,
        window: timedelta,
        prompt_name: str | None = None,
        tenant_id: str | None = None,
    ) -> dict[str, Any]:
        return await prompt_versions(
            self.database, principal, window, prompt_name=prompt_name, tenant_id=tenant_id
        )


@asynccontextmanager
async def open_observability(
    settings: Settings, database: Database, *, tracer_provider: TracerProvider | None = None
) -> AsyncIterator[Observability]:
    """Start the request log's writer and the tracer; stop them (flushing) on exit."""
    config = settings.observe
    models = _model_names(settings)
    deployments = {d.display_name: d.provider for m in settings.models for d in m.deployments}
    spans = (
        SpanStore(
            database,
            buffer_size=config.buffer_size,
            batch_size=config.batch_size,
            flush_interval_s=config.flush_interval_s,
        )
        if config.store_traces
        else None
    )
    with open_tracing(tracer_provider, store=spans) as tracer:
        metrics = Metrics(models=models, deployments=deployments)
        request_log = RequestLog(
            database,
            buffer_size=config.buffer_size,
            batch_size=config.batch_size,
            flush_interval_s=config.flush_interval_s,
            max_content_chars=config.max_content_chars,
            retention_days=config.retention_days,
            retention_interval_s=config.retention_interval_s,
            tenant_retention_days=config.tenant_retention_days,
        )
        metrics.watch_request_log(lambda: request_log.pending, lambda: request_log.dropped)
        if spans is not None:
            store = spans.buffer
            metrics.watch_spans(lambda: store.pending, lambda: store.dropped)
        recorder = Recorder(request_log, metrics, config, tracer, providers=deployments)
        await request_log.start()
        if spans is not None:
            await spans.start()
        try:
            yield Observability(
                database,
                request_log,
                metrics,
                recorder,
                tracer,
                spans=spans,
                access_log=config.access_log,
                logs_timeout_s=config.logs_query_timeout_s,
            )
        finally:
            await request_log.stop()
            if spans is not None:
                await spans.stop()


def _model_names(settings: Settings) -> Iterable[str]:
    for model in settings.models:
        yield model.name
        yield from model.aliases
