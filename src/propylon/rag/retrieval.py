"""Builds search and answers from the settings (called by the composition root)."""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.trace import Tracer

from propylon.db.database import Database
from propylon.gateway.protocol import ChatService, EmbeddingService, RerankService
from propylon.gateway.registry import ModelRegistry
from propylon.rag.answer import Answerer, AnswerOptions, ModelInfo
from propylon.rag.bm25 import BM25Index, BM25Params
from propylon.rag.conversations import ConversationStore
from propylon.rag.prompt import MARKERS, PassageMarker
from propylon.rag.search import FusionParams, RerankParams, SearchService
from propylon.settings import Settings
from propylon.tokens import TokenCounter


@dataclass(frozen=True, slots=True)
class Retrieval:
    search: SearchService
    answers: Answerer


def build_retrieval(
    settings: Settings,
    database: Database,
    chat: ChatService,
    embeddings: EmbeddingService,
    registry: ModelRegistry,
    marker: PassageMarker | None = None,
    reranker: RerankService | None = None,
    tracer: Tracer | None = None,
) -> Retrieval:
    """``chat``, ``embeddings`` and ``reranker`` are the request path's services (the gateway
    chain). A ``retrieval.reranker`` that is not a configured rerank model fails here, at
    start-up."""
    config = settings.retrieval
    rerank = None
    if config.reranker is not None:
        model = registry.resolve(config.reranker, kind="rerank")
        rerank = RerankParams(model.name, config.rerank_candidates)
    search = SearchService(
        database,
        embeddings,
        BM25Index(params=BM25Params(settings.rag.bm25_k1, settings.rag.bm25_b)),
        FusionParams(config.fusion, config.rrf_k, config.dense_weight, config.candidates),
        reranker=reranker,
        rerank=rerank,
    )

    def describe(name: str) -> ModelInfo:
        model = registry.resolve(name, kind="chat")
        return ModelInfo(
            name=model.name,
            context_window=model.context_window,
            tokenizer_model=model.deployments[0].model or model.name,
            local=all(d.provider == "local" for d in model.deployments),
        )

    answers = Answerer(
        database,
        search,
        chat,
        ConversationStore(database),
        TokenCounter(),
        describe,
        AnswerOptions(
            answer_model=config.answer_model,
            top_k=config.top_k,
            default_context_window=config.default_context_window,
            max_context_tokens=config.max_context_tokens,
            answer_max_tokens=config.answer_max_tokens,
            history_share=config.history_share,
            keep_turns=config.keep_turns,
            exclude_risk_at=config.exclude_risk_at,
        ),
        marker or MARKERS[config.spotlighting],
        tracer=tracer,
    )
    return Retrieval(search, answers)
