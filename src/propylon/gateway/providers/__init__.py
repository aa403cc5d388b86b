"""Provider adapters, registered by type name.

A provider type is a factory that turns one deployment's configuration into an adapter that
satisfies ``ChatModel``, ``EmbeddingModel`` and/or ``RerankModel``. Adding a provider is one
module and one row in ``PROVIDERS``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

from propylon.gateway.protocol import ChatModel, EmbeddingModel, RerankModel
from propylon.gateway.providers.anthropic import AnthropicProvider
from propylon.gateway.providers.openai import OpenAIProvider
from propylon.local.reranker import LocalReranker
from propylon.settings import DeploymentConfig


@dataclass(slots=True)
class ProviderContext:
    """What adapters may use: the shared upstream session and the local models."""

    session: aiohttp.ClientSession
    local_chat: ChatModel | None = None
    local_embeddings: EmbeddingModel | None = None


Adapter = ChatModel | EmbeddingModel | RerankModel
ProviderFactory = Callable[[DeploymentConfig, ProviderContext], Adapter]


def _openai(deployment: DeploymentConfig, ctx: ProviderContext) -> Adapter:
    return OpenAIProvider(deployment, ctx.session)


def _anthropic(deployment: DeploymentConfig, ctx: ProviderContext) -> Adapter:
    return AnthropicProvider(deployment, ctx.session)


def _local(deployment: DeploymentConfig, ctx: ProviderContext) -> Adapter:
    """The offline models: `extractive` answers, `all-MiniLM-L6-v2` embeddings, and
    `minilm-rerank` (MiniLM similarity blended with BM25: see ``local.reranker``)."""
    name = (deployment.model or "").removeprefix("local/")
    embedder = ctx.local_embeddings
    model: Adapter | None = {
        "extractive": ctx.local_chat,
        "all-MiniLM-L6-v2": embedder,
        "minilm-rerank": LocalReranker(embedder) if embedder is not None else None,
    }.get(name)
    if model is None:
        raise ValueError(
            f"unknown local model {deployment.model!r}; "
            "known: extractive, all-MiniLM-L6-v2, minilm-rerank"
        )
    return model


PROVIDERS: dict[str, ProviderFactory] = {
    "openai": _openai,
    "azure": _openai,
    "anthropic": _anthropic,
    "local": _local,
}


def build_adapter(deployment: DeploymentConfig, ctx: ProviderContext) -> Adapter:
    factory = PROVIDERS.get(deployment.provider)
    if factory is None:
        known = ", ".join(sorted(PROVIDERS))
        raise ValueError(f"unknown provider type {deployment.provider!r}; known: {known}")
    return factory(deployment, ctx)
