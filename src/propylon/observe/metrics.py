"""Prometheus metrics, in a registry owned by one app (never the process-global one).

Label values are bounded: models and deployments outside the configuration become
``other``, statuses are HTTP codes, and nothing a caller chooses freely (user ids, prompts,
metadata) is ever a label.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.registry import Collector

from propylon.background import WriterLoop
from propylon.gateway.call import CACHE_STATUSES
from propylon.gateway.circuit_breaker import BreakerState, CircuitBreaker
from propylon.observe.record import RequestRecord

log = logging.getLogger(__name__)

OTHER = "other"
NONE = "none"
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
_JOB_BUCKETS = (0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600)
_ENDPOINTS = frozenset(
    {"chat", "embeddings", "rag", "responses", "messages", "completions", "rerank"}
)
_CACHE_STATUSES = frozenset(CACHE_STATUSES)
# Refusals by Propylon itself (not an upstream's 429).
_REFUSALS = frozenset({"rate_limit_exceeded", "insufficient_quota"})

ScrapeHook = Callable[[], Awaitable[None]]
_M = TypeVar("_M", bound=MetricWrapperBase)


class JobMetrics(Protocol):
    """What the job queue reports: its depth (or feed it from a scrape hook) and each job."""

    def queue_depth(self, queue: str, depth: int) -> None: ...

    def job_finished(self, kind: str, outcome: str, seconds: float) -> None: ...


class Metrics:
    """Every Propylon series, registered in ``self.registry``.

    ``observe(record)`` counts one finished request; the job queue reports through the
    ``JobMetrics`` methods; breaker states and the request log's buffer are read at scrape
    time. ``add_scrape_hook`` lets a part refresh a gauge (e.g. a queue depth query) just
    before each scrape.
    """

    def __init__(self, models: Iterable[str] = (), deployments: Iterable[str] = ()) -> None:
        self.registry = CollectorRegistry()
        self._models = frozenset(models)
        self._deployments = frozenset(deployments)
        self._hooks: list[ScrapeHook] = []
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], MetricWrapperBase] = {}
        r = self.registry
        self.requests = Counter(
            "propylon_requests",
            "Requests by endpoint, requested model, serving deployment and HTTP status.",
            ["endpoint", "model", "deployment", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "propylon_request_duration_seconds",
            "Total latency of requests, as the client saw it.",
            ["endpoint", "model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "propylon_time_to_first_token_seconds",
            "Time to the first streamed chunk.",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.overhead = Histogram(
            "propylon_gateway_overhead_seconds",
            "Time spent in Propylon per request, waiting on upstreams excluded.",
            ["endpoint"],
            buckets=_OVERHEAD_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "propylon_tokens",
            "Tokens by model and type (prompt, completion, cached).",
            ["model", "type"],
            registry=r,
        )
        self.cost = Counter("propylon_cost_usd", "Cost in USD by model.", ["model"], registry=r)
        self.cache = Counter(
            "propylon_cache_requests",
            "Response cache outcomes: hit-exact, hit-semantic, miss, bypass, verify-agree, "
            "verify-wrong (a sampled semantic hit answered by the upstream, and the verdict).",
            ["status"],
            registry=r,
        )
        self.refusals = Counter(
            "propylon_rate_limit_refusals",
            "Requests refused by Propylon's own rate limits and budgets, by reason.",
            ["reason"],
            registry=r,
        )
        self.job_depth = Gauge(
            "propylon_job_queue_depth", "Jobs waiting, by queue.", ["queue"], registry=r
        )
        self.job_duration = Histogram(
            "propylon_job_duration_seconds",
            "Duration of finished jobs, by kind and outcome.",
            ["kind", "outcome"],
            buckets=_JOB_BUCKETS,
            registry=r,
        )

    def observe(self, record: RequestRecord) -> None:
        """Count one finished request."""
        endpoint = record.endpoint if record.endpoint in _ENDPOINTS else OTHER
        model = self._model(record.requested_model)
        deployment = self._deployment(record.deployment)
        child = self._child
        child(self.requests, endpoint, model, deployment, str(record.status)).inc()
        child(self.latency, endpoint, model).observe(record.latency_ms / 1000.0)
        if record.overhead_ms is not None:
            child(self.overhead, endpoint).observe(max(record.overhead_ms, 0.0) / 1000.0)
        if record.ttft_ms is not None:
            child(self.ttft, model).observe(record.ttft_ms / 1000.0)
        for kind, value in (
            ("prompt", record.prompt_tokens),
            ("completion", record.completion_tokens),
            ("cached", record.cached_tokens),
        ):
            if value:
                child(self.tokens, model, kind).inc(value)
        if record.cost_usd:
            child(self.cost, model).inc(record.cost_usd)
        if record.cache_status is not None:
            status = record.cache_status if record.cache_status in _CACHE_STATUSES else OTHER
            child(self.cache, status).inc()
        if record.error_code in _REFUSALS:
            child(self.refusals, record.error_code).inc()

    def _child(self, metric: _M, *values: str) -> _M:
        """``metric.labels(*values)``, remembered: prometheus_client checks the values and
        takes a lock on every call (about 1.5 µs, six times a request). Every label value
        here comes from a closed set (known models and deployments, else ``other``), so the
        memo stays small."""
        key = (metric, values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return cast(_M, found)

    # JobMetrics
    def queue_depth(self, queue: str, depth: int) -> None:
        self.job_depth.labels(queue).set(depth)

    def job_finished(self, kind: str, outcome: str, seconds: float) -> None:
        self.job_duration.labels(kind, outcome).observe(seconds)

    def watch_breakers(self, source: Callable[[], Mapping[str, CircuitBreaker]]) -> None:
        """Export every deployment's breaker state, read at scrape time."""
        self.registry.register(_BreakerCollector(source))

    def watch_request_log(self, pending: Callable[[], int], dropped: Callable[[], int]) -> None:
        """Export the request log's buffer size and drops, read at scrape time."""
        self.registry.register(
            _BufferCollector("request_log", "Request log records", pending, dropped)
        )

    def watch_spans(self, pending: Callable[[], int], dropped: Callable[[], int]) -> None:
        """Export the trace store's buffer size and drops, read at scrape time."""
        self.registry.register(_BufferCollector("spans", "Trace spans", pending, dropped))

    def watch_writers(self, source: Callable[[], Iterable[WriterLoop]]) -> None:
        """Export each background writer's health, refusals and restarts at scrape time."""
        self.registry.register(_WriterCollector(source))

    def watch_guard_first_stage(
        self, decided: Callable[[], int], deferred: Callable[[], int]
    ) -> None:
        """Export the windows of user input the guard's first stage scored alone and those
        it sent to MiniLM (its own counters, read at scrape time)."""
        self.registry.register(
            _CountsCollector(
                "propylon_guard_first_stage_windows",
                "Windows of user input the guard's static first stage decided alone, or "
                "deferred to MiniLM (about 5-7 ms of CPU each).",
                "outcome",
                lambda: {"decided": decided(), "deferred": deferred()},
            )
        )

    def watch_guard_int8(self, counts: Callable[[], Mapping[str, int]]) -> None:
        """Export the windows of user input the guard's int8 MiniLM read (``guard.user_int8``),
        by whether its score decided or the exact model read them again (its counters, read
        at scrape time)."""
        self.registry.register(
            _CountsCollector(
                "propylon_guard_int8_windows",
                "Windows of user input the guard's int8 MiniLM read: kept (its score decided) "
                "or reread (within the margin of a threshold: read again by the exact model, "
                "whose score decided).",
                "outcome",
                counts,
            )
        )

    def watch_cache_index(
        self, sizes: Callable[[], Mapping[str, int]], builds: Callable[[], Mapping[str, int]]
    ) -> None:
        """Export the semantic cache's first-stage index: its entries by how their scope is
        searched, and its scopes' graph builds by outcome (read at scrape time)."""
        self.registry.register(
            _CountsCollector(
                "propylon_cache_semantic_index_entries",
                "Entries in this replica's first-stage index, by how their scope is searched: "
                "scan (every row, below 8,000 entries) or graph (an HNSW graph, up to 1.7 KB "
                "more an entry).",
                "searched",
                sizes,
                gauge=True,
            )
        )
        self.registry.register(
            _CountsCollector(
                "propylon_cache_semantic_index_graph_builds",
                "Graphs of large scopes built in a worker thread, by outcome: built (in use), "
                "restarted (rows were removed meanwhile: built again), failed (the scan serves).",
                "outcome",
                builds,
            )
        )

    def watch_cache(self, stats: Callable[[], CacheCounts]) -> None:
        """Export the response cache's counters by key (``CacheStats``, read at scrape time;
        each key set is closed and written in the cache's code)."""
        for name, documentation, label, pick in _CACHE_COUNTS:
            self.registry.register(
                _CountsCollector(name, documentation, label, _reading(stats, pick))
            )

    def add_scrape_hook(self, hook: ScrapeHook) -> None:
        """Run ``hook`` (bounded to 2 s) before each scrape, e.g. to refresh a gauge."""
        self._hooks.append(hook)

    async def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        for hook in self._hooks:
            try:
                await asyncio.wait_for(hook(), 2.0)
            except Exception as exc:
                log.warning("metrics scrape hook failed", extra={"error": repr(exc)})
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def _model(self, name: str | None) -> str:
        if name is None:
            return NONE
        return name if name in self._models else OTHER

    def _deployment(self, name: str | None) -> str:
        if name is None:
            return NONE
        return name if name in self._deployments else OTHER


class _BreakerCollector(Collector):
    def __init__(self, source: Callable[[], Mapping[str, CircuitBreaker]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "propylon_circuit_breaker_state",
            "1 for the current state of each deployment's breaker (closed, open, half_open).",
            labels=["deployment", "state"],
        )
        for name, breaker in sorted(self._source().items()):
            current = breaker.state
            for state in BreakerState:
                family.add_metric([name, state.value], 1.0 if state is current else 0.0)
        yield family


class _BufferCollector(Collector):
    """A ``CopyBuffer``'s backlog and drops."""

    def __init__(
        self, name: str, what: str, pending: Callable[[], int], dropped: Callable[[], int]
    ) -> None:
        self._name = name
        self._what = what
        self._pending = pending
        self._dropped = dropped

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            f"propylon_{self._name}_pending",
            f"{self._what} in memory, waiting to be written.",
            value=self._pending(),
        )
        yield CounterMetricFamily(
            f"propylon_{self._name}_dropped",
            f"{self._what} dropped because the buffer was full.",
            value=self._dropped(),
        )


class CacheCounts(Protocol):
    """What ``watch_cache`` reads of ``gateway.cache.stats.CacheStats``."""

    @property
    def skipped(self) -> Mapping[str, int]: ...

    @property
    def errors(self) -> Mapping[str, int]: ...

    @property
    def first_stage(self) -> Mapping[str, int]: ...


Pick = Callable[[CacheCounts], Mapping[str, int]]


def _reading(stats: Callable[[], CacheCounts], pick: Pick) -> Callable[[], Mapping[str, int]]:
    return lambda: pick(stats())


# name, help, label, and what each cache counter family reads of ``CacheCounts``.
_CACHE_COUNTS: tuple[tuple[str, str, str, Pick], ...] = (
    (
        "propylon_cache_semantic_skipped",
        "Answers the semantic cache did not store, by reason (unstorable_question, "
        "unstorable_answer: a NUL PostgreSQL cannot keep as served).",
        "reason",
        lambda counts: counts.skipped,
    ),
    (
        "propylon_cache_errors",
        "Response cache failures served as misses, by source (database, embedder, redis, timeout).",
        "source",
        lambda counts: counts.errors,
    ),
    (
        "propylon_cache_semantic_first_stage_lookups",
        "Semantic cache lookups decided by static vectors alone (decided), or judged on the "
        "embedder's vectors because a cached question came near (deferred; a question with "
        "the very same text as a cached one reuses that one's vector).",
        "outcome",
        lambda counts: counts.first_stage,
    ),
)


@dataclass(frozen=True, slots=True)
class _CountsCollector(Collector):
    """One counter family, a sample per label value, from counts another part keeps."""

    name: str
    documentation: str
    label: str
    source: Callable[[], Mapping[str, int]]
    gauge: bool = False  # a level read at scrape time, not a count since start

    def collect(self) -> Iterator[Metric]:
        kind = GaugeMetricFamily if self.gauge else CounterMetricFamily
        family = kind(self.name, self.documentation, labels=[self.label])
        for value, count in sorted(self.source().items()):
            family.add_metric([value], count)
        yield family


class _WriterCollector(Collector):
    def __init__(self, source: Callable[[], Iterable[WriterLoop]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Metric]:
        failing = GaugeMetricFamily(
            "propylon_writer_failing",
            "1 while a background writer cannot write (its rows wait in memory).",
            labels=["writer"],
        )
        failed = CounterMetricFamily(
            "propylon_writer_failed_writes",
            "Background writes that failed (an outage); retried with a capped backoff.",
            labels=["writer"],
        )
        refused = CounterMetricFamily(
            "propylon_writer_refused_rows",
            "Rows a background writer dropped because the database refused their data.",
            labels=["writer"],
        )
        restarts = CounterMetricFamily(
            "propylon_writer_restarts",
            "Times a background writer's loop died and was restarted.",
            labels=["writer"],
        )
        for writer in self._source():
            failing.add_metric([writer.name], 0.0 if writer.healthy else 1.0)
            failed.add_metric([writer.name], writer.failed_writes)
            refused.add_metric([writer.name], writer.refused)
            restarts.add_metric([writer.name], writer.restarts)
        yield from (failing, failed, refused, restarts)
