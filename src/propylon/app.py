"""Composition root: settings → concrete parts → services → HTTP app.

This is the only module that picks concrete classes. Everything it builds receives what it
uses through its constructor.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import aiohttp
from fastapi import FastAPI
from opentelemetry.trace import Tracer, TracerProvider
from prometheus_client import CollectorRegistry

from propylon import __version__
from propylon.access.budgets import price_table
from propylon.access.directory import KeyDirectory
from propylon.access.limited import AccessPolicy, LimitsLayer
from propylon.access.limits import Limits, MemoryRateLimiter, RateLimiter
from propylon.access.revocation import KeyRevocation
from propylon.access.store import AccessStore
from propylon.access.tenant_deletion import TenantDeletion
from propylon.access.tickets import SocketTickets
from propylon.access.usage import UsageRecorder
from propylon.background import stop_tasks
from propylon.completions.service import CompletionsService
from propylon.db.connect import SERVER_CONNECT_WAIT_S, open_database
from propylon.db.database import Database
from propylon.db.migrator import migrate
from propylon.gateway.cache.cached import CachedChatService
from propylon.gateway.cache.exact import ExactCache, MemoryExactCache
from propylon.gateway.cache.first_stage import FirstStage
from propylon.gateway.cache.semantic import SemanticCache
from propylon.gateway.cache.stats import CacheStats
from propylon.gateway.cache.verifier import JudgeWeights, Verifier
from propylon.gateway.circuit_breaker import CircuitBreaker
from propylon.gateway.context_window import ContextWindowCheck
from propylon.gateway.preflight import PreflightChat
from propylon.gateway.protocol import (
    ChatModel,
    ChatService,
    EmbeddingModel,
    EmbeddingService,
    RerankModel,
    RerankService,
)
from propylon.gateway.providers import ProviderContext, build_adapter
from propylon.gateway.registry import ModelRegistry
from propylon.gateway.retry import RetryPolicy
from propylon.gateway.router import Deployment
from propylon.gateway.service import Gateway
from propylon.guard.detector import InjectionDetector, open_detector
from propylon.guard.guarded import GuardedChatService
from propylon.guard.leaks import LeakCheckedChatService
from propylon.guard.moderation import Moderator
from propylon.http import (
    admin,
    cache_admin,
    chat,
    collections,
    completions,
    console,
    conversations,
    embeddings,
    health,
    jobs,
    logs,
    mcp_servers,
    messages,
    metrics,
    models,
    moderations,
    rag,
    rerank,
    responses,
    runs,
    sources,
    ws_tickets,
)
from propylon.http.errors import install_error_handlers
from propylon.http.hot_routes import FrontedFastAPI, HotRoutes
from propylon.http.request_context import RequestContextMiddleware
from propylon.http.storable_text import RefuseUnstorableText
from propylon.jobs.feeds import JobFeeds
from propylon.jobs.handler import Handler, Handlers
from propylon.jobs.progress import ProgressHub
from propylon.jobs.queue import JobQueue
from propylon.jobs.worker import Worker
from propylon.local.lazy import LazyEmbedder
from propylon.local.memory import release_free_memory, settle_heap
from propylon.local.static import StaticEmbedder
from propylon.messages.service import MessagesService
from propylon.observe.observability import open_observability
from propylon.principal import Principal
from propylon.rag.chat import RagChatService
from propylon.rag.engine import (
    build_collection_service,
    build_ingestion_handler,
    build_source_service,
    build_sync_handler,
)
from propylon.rag.ingest import INGEST_KIND, RiskScreen
from propylon.rag.retrieval import build_retrieval
from propylon.rag.sources.sync import SYNC_KIND
from propylon.responses.conversations import ResponseConversations
from propylon.responses.service import ResponsesService
from propylon.responses.store import ResponseStore
from propylon.runs.executor import RunExecutor
from propylon.runs.mcp import McpServers
from propylon.runs.service import JOB_KIND as RUN_KIND
from propylon.runs.service import RunService
from propylon.services import Services
from propylon.settings import CacheSettings, Settings
from propylon.tokens import TokenCounter

log = logging.getLogger(__name__)

LOCAL_EMBEDDER_ID = "local:all-MiniLM-L6-v2"  # the semantic cache's name for the local MiniLM


def build_gateway(
    settings: Settings, ctx: ProviderContext, tracer: Tracer | None = None
) -> Gateway:
    """One adapter and one circuit breaker per configured deployment, grouped by model."""
    registry = ModelRegistry(settings.models)
    chat: dict[str, list[Deployment[ChatModel]]] = {}
    embeddings: dict[str, list[Deployment[EmbeddingModel]]] = {}
    rerank: dict[str, list[Deployment[RerankModel]]] = {}
    for model in registry.models:
        for config in model.deployments:
            adapter = build_adapter(config, ctx)
            breaker = CircuitBreaker(**settings.breaker.model_dump())
            if model.kind == "chat" and isinstance(adapter, ChatModel):
                chat.setdefault(model.name, []).append(Deployment(config, adapter, breaker))
            elif model.kind == "embeddings" and isinstance(adapter, EmbeddingModel):
                embeddings.setdefault(model.name, []).append(Deployment(config, adapter, breaker))
            elif model.kind == "rerank" and isinstance(adapter, RerankModel):
                rerank.setdefault(model.name, []).append(Deployment(config, adapter, breaker))
            else:
                raise ValueError(
                    f"deployment {config.display_name} of {model.name!r} cannot serve {model.kind}"
                )
    counter = TokenCounter()
    return Gateway(
        registry,
        chat,
        embeddings,
        rerank=rerank,
        max_messages=settings.max_messages,
        retry=RetryPolicy(**settings.retry.model_dump()),
        context_window=ContextWindowCheck(counter),
        counter=counter,
        tracer=tracer,
    )


@asynccontextmanager
async def open_limiter(
    settings: Settings, registry: CollectorRegistry
) -> AsyncIterator[RateLimiter]:
    """Shared buckets in Redis when ``redis_url`` is set; this process's memory otherwise.

    ``redis`` is imported only in the first case: it adds 8 MB to the RSS of every process.
    """
    if settings.redis_url is None:
        yield MemoryRateLimiter()
        return
    from propylon.access.metrics import RedisLimiterCollector
    from propylon.access.redis_limiter import RedisRateLimiter

    limiter = RedisRateLimiter(
        settings.redis_url.get_secret_value(),
        prefix=settings.access.redis_prefix,
        fail_open=settings.access.redis_fail_open,
        timeout_s=settings.access.redis_timeout_s,
        max_connections=settings.access.redis_connections,
    )
    registry.register(RedisLimiterCollector(limiter))
    try:
        yield limiter
    finally:
        await limiter.close()


def access_policy(settings: Settings) -> AccessPolicy:
    """Defaults for keys that set nothing, the price table, and the models open to every key."""
    return AccessPolicy(
        default_limits=Limits(settings.access.default_rpm, settings.access.default_tpm),
        completion_estimate=settings.access.completion_estimate,
        cache_hits_count_rpm=settings.access.cache_hits_count_rpm,
        internal_counts_against_budget=settings.access.internal_counts_against_budget,
        prices=price_table(settings.observe.prices),
        open_models=frozenset(m.name for m in settings.models if m.open_to_every_key),
    )


def _local_model_names(settings: Settings) -> frozenset[str]:
    """Names and aliases of the models served only by local deployments."""
    return frozenset(
        name for m in settings.models if m.open_to_every_key for name in (m.name, *m.aliases)
    )


def _model_names(settings: Settings) -> list[str]:
    """Every name a configured model answers to, and the upstream names of its deployments."""
    return [
        name
        for m in settings.models
        for name in (m.name, *m.aliases, *(d.model for d in m.deployments if d.model))
    ]


def _uses_local_models(settings: Settings) -> bool:
    """Local deployments, the semantic cache on the local MiniLM, or the guard's classifier:
    one instance serves all (the guard is handed ``ctx.local_embeddings``)."""
    cache, guard = settings.cache, settings.guard
    return (
        any(d.provider == "local" for m in settings.models for d in m.deployments)
        or (cache.enabled and cache.semantic and cache.semantic_embedder is None)
        or (guard.enabled and guard.classifier)
    )


def _uses_static(settings: Settings) -> bool:
    """Whether the guard or the semantic cache runs a static first stage: one table serves
    both."""
    cache, guard = settings.cache, settings.guard
    return (cache.enabled and cache.semantic and cache.semantic_first_stage) or (
        guard.enabled and guard.classifier and guard.first_stage
    )


@asynccontextmanager
async def open_local_models(
    settings: Settings,
) -> AsyncIterator[tuple[ChatModel, LazyEmbedder[Any]]]:
    """The offline embedder and the extractive answer model built on it. The embedder loads
    on its first use (0.3-0.6 s of CPU, ~100 MB with onnxruntime: ``local/lazy.py``), not here."""
    from propylon.local.extractive import ExtractiveChatModel

    async with _lazy_minilm(settings, int8=settings.local_int8) as embedder:
        yield ExtractiveChatModel(embedder), embedder


@asynccontextmanager
async def open_guard_user_model(settings: Settings) -> AsyncIterator[LazyEmbedder[Any] | None]:
    """The MiniLM with int8 kernels that reads user input for the guard (``guard.user_int8``),
    loaded on its first use; None when the classifier is off or ``local_int8`` already makes
    the shared model int8."""
    from propylon.local.minilm import MODEL_ID

    guard = settings.guard
    if not (guard.classifier and guard.user_int8) or settings.local_int8:
        yield None
        return
    async with _lazy_minilm(settings, int8=True, name=f"{MODEL_ID}+int8") as embedder:
        yield embedder


@asynccontextmanager
async def _lazy_minilm(
    settings: Settings, *, int8: bool, name: str | None = None
) -> AsyncIterator[LazyEmbedder[Any]]:
    """A MiniLM loaded on its first use, closed at exit (waiting for a load under way)."""
    from propylon.local.minilm import MODEL_ID, lazy_embedder

    embedder = lazy_embedder(threads=settings.local_threads, int8=int8, name=name or MODEL_ID)
    try:
        yield embedder
    finally:
        await asyncio.to_thread(embedder.close)


T = TypeVar("T")


@asynccontextmanager
async def loading(load: Callable[[], T]) -> AsyncIterator[asyncio.Future[T]]:
    """``load()`` started in a thread now, awaited where it is needed; never left running
    unawaited when start-up fails before then."""
    task = asyncio.ensure_future(asyncio.to_thread(load))
    try:
        yield task
    finally:
        if not task.done():
            await asyncio.wait([task])
        if not task.cancelled():
            task.exception()  # retrieved: a failure already raised (or unneeded) is not logged


@asynccontextmanager
async def open_first_stage(
    config: CacheSettings, static: StaticEmbedder | None
) -> AsyncIterator[FirstStage]:
    """The semantic cache's static first stage (loading the table took 50-110 ms, measured
    around ``StaticEmbedder.load`` on a loaded 2-core host, unless ``static`` is the one the
    guard uses too)."""
    model = static if static is not None else await asyncio.to_thread(StaticEmbedder.load)
    yield FirstStage(
        model,
        f"{model.model_id}:{model.weights_sha256[:12]}",
        config.semantic_first_threshold,
    )


@asynccontextmanager
async def open_cache(
    settings: Settings,
    gateway: Gateway,
    database: Database,
    local_embedder: EmbeddingModel | None,
    static: StaticEmbedder | None = None,
) -> AsyncIterator[CachedChatService]:
    """The cache layer around the gateway: exact in Redis (or this process), semantic in
    pgvector with the local MiniLM or the configured embeddings model."""
    config = settings.cache
    stats = CacheStats()
    exact: ExactCache
    if settings.redis_url is not None:
        from propylon.gateway.cache.exact_redis import RedisExactCache  # redis only when used

        exact = RedisExactCache(
            settings.redis_url.get_secret_value(),
            prefix=config.redis_prefix,
            timeout_s=config.redis_timeout_s,
            retry_s=config.redis_retry_s,
            stats=stats,
        )
    else:
        exact = MemoryExactCache(config.exact_max_entries)
    async with AsyncExitStack() as stack:
        stack.push_async_callback(exact.aclose)
        semantic = None
        if config.enabled and config.semantic:
            if config.semantic_embedder is not None:
                embedder: EmbeddingModel = gateway
                embedder_id = f"model:{config.semantic_embedder}"
            elif local_embedder is not None:
                embedder, embedder_id = local_embedder, LOCAL_EMBEDDER_ID
            else:
                _, embedder = await stack.enter_async_context(open_local_models(settings))
                embedder_id = LOCAL_EMBEDDER_ID
            if config.semantic_embedder is None and settings.local_int8:
                embedder_id += "+int8"  # other vectors: never compared with the default's
            first_stage = (
                await stack.enter_async_context(open_first_stage(config, static))
                if config.semantic_first_stage
                else None
            )
            semantic = SemanticCache(
                database,
                embedder,
                embedder_id=embedder_id,
                embed_request={"model": config.semantic_embedder}
                if config.semantic_embedder
                else None,
                verifier=Verifier(
                    JudgeWeights.load(), min_probability=config.semantic_min_probability
                )
                if config.semantic_verify
                else None,
                record_lookups=config.record_lookups,
                stats=stats,
                first_stage=first_stage,
                index_entries=config.semantic_index_entries,
                index_refresh_s=config.semantic_index_refresh_s,
            )
            stack.push_async_callback(semantic.aclose)  # writes what is queued
        # Below the cache: the per-request canary never enters a cache key, and only answers
        # that passed the leak checks are stored.
        inner: ChatService = gateway
        if settings.guard.enabled:
            inner = LeakCheckedChatService(
                gateway, settings.guard, quoting_models=_local_model_names(settings)
            )
        yield CachedChatService(
            inner,
            settings=config,
            exact=exact,
            semantic=semantic,
            resolve_model=lambda name: gateway.registry.resolve(name, kind="chat").name,
            stats=stats,
        )


HandlerFactory = Callable[[Services], Handlers]
"""Builds a handler table from the running services (``job_handlers``; tests pass their own)."""


def job_handlers(services: Services) -> dict[str, Handler]:
    """The handler table: job kind -> handler, built once per process from its services.

    Workers claim only the kinds listed here (see ``propylon.jobs.handler`` for the contract).
    """
    return {
        INGEST_KIND: build_ingestion_handler(
            services.settings,
            services.database,
            services.embeddings,
            risk_screen(services.detector, services.settings),
            services.collections,
        ),
        SYNC_KIND: build_sync_handler(
            services.settings.rag, services.database, services.collections, services.jobs
        ),
        RUN_KIND: RunExecutor(
            services.database,
            services.chat,
            services.search,
            services.detector,
            key_revoked=key_revoked(services),
            http_get_hosts=services.settings.agents.hosts_for,
            mcp=services.mcp_servers,
            tracer=services.observe.tracer,
        ),
    }


@asynccontextmanager
async def open_key_revocation(
    settings: Settings, store: AccessStore
) -> AsyncIterator[KeyRevocation]:
    """``KeyRevocation`` for ``propylon keys revoke``: the runs and job queue of ``serve``
    over the CLI's database, with its own job-event listener (a queued run cancelled by a
    worker in between is waited for as ``cancel`` waits for it in ``serve``)."""
    hub = ProgressHub(store.database.url)
    await hub.start()
    try:
        jobs = JobQueue(store.database, hub, cancel_wait_s=settings.jobs.cancel_wait_s)
        yield KeyRevocation(store, RunService(store.database, jobs, hub))
    finally:
        await hub.close()


def key_revoked(services: Services) -> Callable[[str], Awaitable[bool]]:
    """Is the key revoked (or gone)? From memory; a key this process has not heard of yet
    (made a moment ago elsewhere) is read from the database."""

    async def revoked(key_id: str) -> bool:
        record = services.keys.record(key_id)
        if record is None:
            found = await services.access.keys(key_id=key_id)
            record = found[0] if found else None
        return record is None or record.revoked

    return revoked


def risk_screen(detector: InjectionDetector | None, settings: Settings) -> RiskScreen | None:
    """Scores ingested chunks with the guard's full detector (the classifier too, whatever
    ``retrieved_classifier`` says: it runs once per chunk, off the request path), as
    retrieved (untrusted) text, so ``retrieval.exclude_risk_at`` works by default."""
    if detector is None:
        return None
    classify = settings.guard.classifier

    async def screen(
        texts: list[str], principal: Principal | None, parent_id: str
    ) -> list[float | None]:
        verdicts = await detector.scan_many(
            texts, "retrieved", classify=classify, principal=principal, parent_id=parent_id
        )
        return [verdict.score for verdict in verdicts]

    return screen


def runs_in_process_worker(settings: Settings) -> bool:
    """`propylon serve` runs a worker too: as configured, else with the embedded database."""
    configured = settings.jobs.in_process_worker
    return settings.embedded_database if configured is None else configured


@asynccontextmanager
async def build_services(
    settings: Settings,
    *,
    worker: bool = False,
    handlers: HandlerFactory | None = None,
    tracer_provider: TracerProvider | None = None,
) -> AsyncIterator[Services]:
    """Start every part in dependency order; stop them in reverse.

    With ``worker``, a job worker runs in this process with the table ``handlers`` builds
    (default: ``job_handlers``) — `propylon worker`, and `propylon serve --with-worker`.
    """
    async with AsyncExitStack() as stack:
        # The static table (0.1-0.3 s) loads in a thread while PostgreSQL starts and the
        # migrations are checked; MiniLM waits for its first use (``open_local_models``).
        static_load = (
            await stack.enter_async_context(loading(StaticEmbedder.load))
            if _uses_static(settings)
            else None
        )
        database = await stack.enter_async_context(
            open_database(settings, connect_wait_s=SERVER_CONNECT_WAIT_S)
        )
        if settings.migrate_on_start:
            applied = await migrate(database)
            if applied:
                log.info("migrations applied", extra={"versions": [m.version for m in applied]})
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=settings.upstream_connection_limit, ttl_dns_cache=300
            ),
            auto_decompress=True,
        )
        stack.push_async_callback(session.close)
        ctx = ProviderContext(session=session)
        local: LazyEmbedder[Any] | None = None
        if _uses_local_models(settings):
            ctx.local_chat, local = await stack.enter_async_context(open_local_models(settings))
            ctx.local_embeddings = local
        # Request log writer, metrics and tracer (OTEL_* or ``tracer_provider``).
        observe = await stack.enter_async_context(
            open_observability(settings, database, tracer_provider=tracer_provider)
        )
        gateway = build_gateway(settings, ctx, observe.tracer)
        observe.watch_breakers(gateway.breakers)
        # The request path, outermost first; each layer wraps the next and satisfies the
        # same ChatService / EmbeddingService protocol.
        store = AccessStore(database)
        keys = KeyDirectory(
            store,
            lookup_timeout_s=settings.access.key_lookup_timeout_s,
            reload_s=settings.access.key_reload_s,
        )
        await keys.start()
        stack.push_async_callback(keys.close)
        if not len(keys):
            log.warning(
                "no API keys yet: create one with `propylon keys create --tenant default` "
                "(same --config / --data-dir / DATABASE_URL as serve), then send it as "
                "`Authorization: Bearer <key>`"
            )
        limiter = await stack.enter_async_context(open_limiter(settings, observe.metrics.registry))
        static = await static_load if static_load is not None else None
        cache = await stack.enter_async_context(
            open_cache(settings, gateway, database, ctx.local_embeddings, static)
        )
        observe.metrics.watch_cache(lambda: cache.stats)
        if (index := cache.semantic_index) is not None:
            observe.metrics.watch_cache_index(index.sizes, lambda: index.graph_builds)
        usage = UsageRecorder(store, interval_s=settings.access.usage_flush_s)
        await usage.start()
        stack.push_async_callback(usage.close)
        # Cheapest refusals first: shape and message count, then keys and rate limits, then
        # the context window and the breakers, and only then the guard's classifier.
        inner: ChatService = observe.traced(cache, "cache")
        detector: InjectionDetector | None = None
        models = [local.lazy] if local is not None else []
        if settings.guard.enabled:
            user_embedder = await stack.enter_async_context(open_guard_user_model(settings))
            if user_embedder is not None:
                models.append(user_embedder.lazy)
            detector = await stack.enter_async_context(
                open_detector(
                    settings.guard,
                    ctx.local_embeddings,
                    threads=settings.local_threads,
                    int8=settings.local_int8,
                    record=observe.record_embeddings,  # the guard's own calls, apart
                    static=static,
                    user_embedder=user_embedder,
                )
            )
            first_stage = detector.first_stage
            if first_stage is not None:
                observe.metrics.watch_guard_first_stage(
                    lambda: first_stage.decided, lambda: first_stage.deferred
                )
            if detector.reads_user_int8:
                observe.metrics.watch_guard_int8(detector.int8_windows)
            guarded = observe.traced(GuardedChatService(inner, detector, settings.guard), "guard")
            inner = PreflightChat(guarded, gateway.check_route)
        limited = LimitsLayer(
            inner,
            gateway,
            reranker=gateway,
            directory=keys,
            store=store,
            usage=usage,
            limiter=limiter,
            counter=TokenCounter(),
            resolve=lambda name, kind: gateway.registry.resolve(name, kind=kind).name,
            policy=access_policy(settings),
        )
        limited = observe.traced(limited, "limits")
        chat: ChatService = PreflightChat(limited, gateway.check_request)
        chat = observe.record_chat(chat)  # outermost: the request log sees every outcome
        embeddings: EmbeddingService = observe.record_embeddings(limited)
        reranker: RerankService = observe.record_rerank(limited)
        # `rag/<collection>` models: answered over a collection, calling the chain above.
        retrieval = build_retrieval(
            settings,
            database,
            chat,
            embeddings,
            gateway.registry,
            reranker=reranker,
            tracer=observe.tracer,
        )
        chat = RagChatService(chat, retrieval.answers)
        hub = ProgressHub(database.url)  # the process's one LISTEN connection for job events
        await hub.start()
        stack.push_async_callback(hub.close)
        job_queue = JobQueue(database, hub, cancel_wait_s=settings.jobs.cancel_wait_s)

        async def refresh_queue_depth() -> None:
            for kind, depth in (await job_queue.queued_by_kind()).items():
                observe.metrics.queue_depth(kind, depth)

        observe.metrics.add_scrape_hook(refresh_queue_depth)
        collections = build_collection_service(settings.rag, database, job_queue, gateway.registry)
        sources = build_source_service(settings.rag, database, collections, job_queue)
        mcp_servers = McpServers(
            database, settings.agents.mcp_stdio_commands, settings.agents.mcp_url_hosts
        )
        runs = RunService(
            database,
            job_queue,
            hub,
            find_collection=collections.get,
            check_model=partial(gateway.registry.resolve, kind="chat"),
            mcp=mcp_servers,
        )
        services = Services(
            settings=settings,
            database=database,
            gateway=gateway,
            chat=chat,
            embeddings=embeddings,
            rerank=reranker,
            keys=keys,
            access=store,
            revocation=KeyRevocation(store, runs),
            tenant_deletion=TenantDeletion(
                database, keys, lambda tenant_id: cache.purge(tenant_id=tenant_id)
            ),
            tickets=SocketTickets(database, keys),
            usage=usage,
            limiter=limiter,
            cache=cache,
            jobs=job_queue,
            job_feeds=JobFeeds(job_queue, hub),
            observe=observe,
            collections=collections,
            sources=sources,
            search=retrieval.search,
            answers=retrieval.answers,
            detector=detector,
            runs=runs,
            mcp_servers=mcp_servers,
            writers=[observe.request_log.loop, usage.loop, *cache.writers],
            responses=ResponsesService(
                chat, ResponseStore(database), ResponseConversations(database)
            ),
            messages=MessagesService(
                chat,
                TokenCounter(),
                lambda name: gateway.registry.resolve(name, kind="chat").name,
            ),
            moderator=Moderator(detector) if detector is not None else None,
            completions=CompletionsService(chat),
            models=models,
        )
        observe.metrics.watch_writers(lambda: services.writers)
        if worker:
            table = (handlers or job_handlers)(services)
            await stack.enter_async_context(
                running_worker(
                    Worker(
                        database,
                        hub,
                        table,
                        settings.jobs,
                        outcomes=observe.metrics,
                        tracer=observe.tracer,
                    )
                )
            )
        release_free_memory()  # what loading the models and the imports left free in the heap
        yield services


@asynccontextmanager
async def running_worker(worker: Worker) -> AsyncIterator[Worker]:
    """Run ``worker`` in the background; on exit, stop it cleanly (see ``Worker.run``)."""
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop), name="propylon-worker")

    def report(done: asyncio.Task[None]) -> None:
        if not stop.is_set() and not done.cancelled():
            log.error("the job worker stopped unexpectedly", exc_info=done.exception())

    task.add_done_callback(report)
    try:
        yield worker
    finally:
        stop.set()
        await task


async def run_worker(
    settings: Settings, handlers: HandlerFactory | None = None, stop: asyncio.Event | None = None
) -> None:
    """`propylon worker`: run jobs until SIGTERM/SIGINT (or ``stop``), then stop cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with build_services(settings, worker=True, handlers=handlers):
            settle_heap()
            log.info("worker ready")
            await stop.wait()
            log.info("worker stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def create_app(
    settings: Settings,
    *,
    handlers: HandlerFactory | None = None,
    tracer_provider: TracerProvider | None = None,
    settle: bool = False,
) -> FastAPI:
    """The HTTP application; its lifespan owns every running part (and the in-process job
    worker, when ``runs_in_process_worker``; tests pass their own ``handlers``). ``settle``:
    the process is a server (``propylon serve``): token encodings are loaded and
    ``settle_heap()`` runs once started."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        worker = runs_in_process_worker(settings)
        async with build_services(
            settings, worker=worker, handlers=handlers, tracer_provider=tracer_provider
        ) as services:
            app.state.services = services
            preload: asyncio.Task[None] | None = None
            if settle:
                # Loading an encoding takes 0.2-1 s: in a thread, beside serving (start-up does
                # not wait for it), not on the event loop of the first request that counts
                # tokens (a stall for every request).
                # Only the encodings of the configured models: another one loads when a
                # request first names a model that uses it.
                async def warm() -> None:
                    await asyncio.to_thread(TokenCounter().preload, _model_names(settings))
                    settle_heap()

                preload = asyncio.create_task(warm(), name="propylon-preload")
            try:
                yield
            finally:
                if preload is not None:
                    await stop_tasks(preload, None)

    app = FrontedFastAPI(
        title="Propylon",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    hot = {
        "/v1/chat/completions": chat.chat_completions,
        "/v1/embeddings": embeddings.create_embeddings,
    }
    # Every request: its context (ids, overhead header, access log), a NUL in its path or
    # query refused, then the hot routes, then FastAPI for everything else.
    app.set_front(
        lambda fastapi: RequestContextMiddleware(RefuseUnstorableText(HotRoutes(fastapi, hot)))
    )
    for module in (
        health,
        models,
        chat,
        completions,
        embeddings,
        responses,
        conversations,
        messages,
        moderations,
        rerank,
        admin,
        cache_admin,
        jobs,
        logs,
        metrics,
        collections,
        sources,
        rag,
        runs,
        mcp_servers,
        ws_tickets,
        console,
    ):
        app.include_router(module.router)
    app.mount("/console", console.static_files(), name="console")
    return app


def app_from_environment() -> FastAPI:
    """The app of one `propylon serve --workers N` process: settings from the environment
    (the parent wrote its flags there), built once in that process."""
    from propylon.observe.logging import configure_logging
    from propylon.settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level)
    return create_app(settings, settle=True)
