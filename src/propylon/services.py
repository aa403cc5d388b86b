"""The running parts of Propylon, built once by the composition root (``propylon.app``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from propylon.access.directory import KeyDirectory
from propylon.access.limits import RateLimiter
from propylon.access.revocation import KeyRevocation
from propylon.access.store import AccessStore
from propylon.access.tenant_deletion import TenantDeletion
from propylon.access.tickets import SocketTickets
from propylon.access.usage import UsageRecorder
from propylon.background import WriterLoop
from propylon.completions.service import CompletionsService
from propylon.db.database import Database
from propylon.gateway.cache.cached import CachedChatService
from propylon.gateway.protocol import ChatService, EmbeddingService, RerankService
from propylon.gateway.service import Gateway
from propylon.guard.detector import InjectionDetector
from propylon.guard.moderation import Moderator
from propylon.jobs.feeds import JobFeeds
from propylon.jobs.queue import JobQueue
from propylon.local.lazy import LazyModel
from propylon.messages.service import MessagesService
from propylon.observe.observability import Observability
from propylon.rag.answer import Answerer
from propylon.rag.collections import CollectionService
from propylon.rag.search import SearchService
from propylon.rag.sources.service import SourceService
from propylon.responses.service import ResponsesService
from propylon.runs.mcp import McpServers
from propylon.runs.service import RunService
from propylon.settings import Settings


@dataclass(slots=True)
class Services:
    """Everything a route handler may call. Built by ``build_services``; never at import.

    ``chat``, ``embeddings`` and ``rerank`` are the outermost layers of the request path (the
    gateway wrapped by limits, cache, guard and the request log); routes call those, never
    ``gateway`` directly.
    """

    settings: Settings
    database: Database
    gateway: Gateway
    chat: ChatService
    embeddings: EmbeddingService
    rerank: RerankService  # /v1/rerank and `retrieval.reranker`: limits and request log
    keys: KeyDirectory
    access: AccessStore
    revocation: KeyRevocation  # revoke a key and cancel its pending runs (API and CLI alike)
    tenant_deletion: TenantDeletion  # DELETE /admin/tenants/{ref}: a tenant and all its rows
    tickets: SocketTickets  # single-use WebSocket tickets (POST /v1/ws-tickets)
    usage: UsageRecorder  # spend counted per request, written in the background
    limiter: RateLimiter  # ``failures`` counts Redis outages when it is a RedisRateLimiter
    cache: CachedChatService  # purge, and ``stats`` counters (hits, misses, errors by source)
    jobs: JobQueue  # enqueue, get, cancel background jobs
    job_feeds: JobFeeds  # live job events (WebSocket feeds)
    observe: Observability  # request log, metrics, tracer; /v1/logs and /v1/stats queries
    collections: CollectionService  # collections and documents; uploads enqueue ingestion
    sources: SourceService  # sources that keep collections in sync (url, folder, s3)
    search: SearchService  # dense / keyword / hybrid search over a tenant's collections
    answers: Answerer  # answers with citations, conversations (`rag/<collection>` models)
    detector: InjectionDetector | None  # prompt-injection scans (None: guard disabled)
    runs: RunService  # background runs: chat, RAG answers, chains and agents as durable jobs
    mcp_servers: McpServers  # the tenants' MCP servers, tool sources for agent runs
    writers: list[WriterLoop]  # the background writers (request log, usage, cache): /readyz
    responses: ResponsesService  # /v1/responses, translated to `chat`; stored per tenant
    messages: MessagesService  # /v1/messages (Anthropic), translated to `chat`
    moderator: Moderator | None  # /v1/moderations, answered by the guard (None: disabled)
    completions: CompletionsService  # /v1/completions (legacy), relayed on the chat path
    # Models loaded on first use (the local MiniLM): /readyz fails once one failed to load.
    models: list[LazyModel[Any]] = field(default_factory=list)
