"""Composition root: settings → concrete parts → services → HTTP app.

This is the only module that picks concrete classes. Everything it builds receives what it
uses through its constructor.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

import aiohttp
from fastapi import FastAPI

from propylon import __version__
from propylon.db.connect import open_database
from propylon.db.migrator import migrate
from propylon.gateway.circuit_breaker import CircuitBreaker
from propylon.gateway.context_window import ContextWindowCheck
from propylon.gateway.protocol import (
    ChatModel,
    ChatService,
    EmbeddingModel,
    EmbeddingService,
)
from propylon.gateway.providers import ProviderContext, build_adapter
from propylon.gateway.registry import ModelRegistry
from propylon.gateway.retry import RetryPolicy
from propylon.gateway.router import Deployment
from propylon.gateway.service import Gateway
from propylon.http import chat, embeddings, health, models
from propylon.http.errors import install_error_handlers
from propylon.services import Services
from propylon.settings import Settings
from propylon.tokens import TokenCounter

log = logging.getLogger(__name__)


def build_gateway(settings: Settings, ctx: ProviderContext) -> Gateway:
    """One adapter and one circuit breaker per configured deployment, grouped by model."""
    registry = ModelRegistry(settings.models)
    chat: dict[str, list[Deployment[ChatModel]]] = {}
    embeddings: dict[str, list[Deployment[EmbeddingModel]]] = {}
    for model in registry.models:
        for config in model.deployments:
            adapter = build_adapter(config, ctx)
            breaker = CircuitBreaker(**settings.breaker.model_dump())
            if model.kind == "chat" and isinstance(adapter, ChatModel):
                chat.setdefault(model.name, []).append(Deployment(config, adapter, breaker))
            elif model.kind == "embeddings" and isinstance(adapter, EmbeddingModel):
                embeddings.setdefault(model.name, []).append(Deployment(config, adapter, breaker))
            else:
                raise ValueError(
                    f"deployment {config.display_name} of {model.name!r} cannot serve {model.kind}"
                )
    return Gateway(
        registry,
        chat,
        embeddings,
        retry=RetryPolicy(**settings.retry.model_dump()),
        context_window=ContextWindowCheck(TokenCounter()),
    )


def _uses_local_models(settings: Settings) -> bool:
    return any(d.provider == "local" for m in settings.models for d in m.deployments)


@asynccontextmanager
async def open_local_models(settings: Settings) -> AsyncIterator[tuple[ChatModel, EmbeddingModel]]:
    """Load the offline embedder (~0.3 s) and the extractive answer model built on it."""
    from propylon.local.extractive import ExtractiveChatModel
    from propylon.local.minilm import MiniLMEmbedder

    embedder = await asyncio.to_thread(MiniLMEmbedder.load, threads=settings.local_threads)
    try:
        yield ExtractiveChatModel(embedder), embedder
    finally:
        embedder.close()


@asynccontextmanager
async def build_services(settings: Settings) -> AsyncIterator[Services]:
    """Start every part in dependency order; stop them in reverse."""
    async with AsyncExitStack() as stack:
        database = await stack.enter_async_context(open_database(settings))
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
        if _uses_local_models(settings):
            ctx.local_chat, ctx.local_embeddings = await stack.enter_async_context(
                open_local_models(settings)
            )
        gateway = build_gateway(settings, ctx)
        # The request path, outermost first; each layer wraps the next and satisfies the
        # same ChatService / EmbeddingService protocol.
        chat: ChatService = gateway
        embeddings: EmbeddingService = gateway
        yield Services(
            settings=settings,
            database=database,
            gateway=gateway,
            chat=chat,
            embeddings=embeddings,
        )


def create_app(settings: Settings) -> FastAPI:
    """The HTTP application; its lifespan owns every running part."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build_services(settings) as services:
            app.state.services = services
            yield

    app = FastAPI(
        title="Propylon",
        version=__version__,
        lifespan=lifespan,
        docs_url="/docs",
        redoc_url=None,
    )
    install_error_handlers(app)
    for module in (health, models, chat, embeddings):
        app.include_router(module.router)
    return app
