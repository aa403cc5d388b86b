"""`retrieval.reranker` names a rerank model, checked when the services are built."""

from __future__ import annotations

from typing import cast

import pytest

from propylon.db.database import Database
from propylon.errors import ModelNotFound
from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import (
    ChatService,
    ChatStream,
    Embeddings,
    EmbeddingService,
    JSONObject,
)
from propylon.gateway.registry import ModelRegistry
from propylon.rag.retrieval import build_retrieval
from propylon.rag.search import RerankParams
from propylon.settings import load_settings


class _Unused:
    async def complete(self, request: JSONObject, call: CallInfo | None = None) -> JSONObject:
        raise AssertionError("not called")

    async def stream(self, request: JSONObject, call: CallInfo | None = None) -> ChatStream:
        raise AssertionError("not called")

    async def embed(
        self, texts: list[str], request: JSONObject | None = None, call: CallInfo | None = None
    ) -> Embeddings:
        raise AssertionError("not called")


def _build(reranker: str) -> RerankParams | None:
    settings = load_settings(None, retrieval={"reranker": reranker, "rerank_candidates": 30})
    unused = _Unused()
    retrieval = build_retrieval(
        settings,
        cast(Database, None),  # never touched while building
        cast(ChatService, unused),
        cast(EmbeddingService, unused),
        ModelRegistry(settings.models),
    )
    return retrieval.search.rerank


def test_the_reranker_setting_names_a_rerank_model() -> None:
    assert _build("local/minilm-rerank") == RerankParams("local/minilm-rerank", 30)


def test_a_reranker_that_is_not_a_rerank_model_fails_at_start_up() -> None:
    with pytest.raises(ModelNotFound, match="rerank model"):
        _build("local/extractive")
