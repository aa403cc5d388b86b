"""``local/minilm-rerank``: the offline reranker, built on the shipped MiniLM embedder.

It is **not a cross-encoder**: it never reads the query and a document together. Each
document's score blends the cosine similarity of its MiniLM vector to the query's with BM25
over the request's own documents (``propylon.local.sentences.relevance``, the same scorer the
extractive model ranks sentences with), each scaled so the request's best document scores 1.
Scores are therefore relative to one request. MiniLM reads only a document's first 256 word
pieces, and past 128 documents only the lexically best 128 are embedded. It needs no download
and no GPU; use a real reranker deployment (vLLM, Jina, Cohere) for quality.
"""

from __future__ import annotations

from propylon.gateway.protocol import EmbeddingModel, JSONObject, Ranking
from propylon.local.sentences import blended_relevance

MODEL_ID = "local/minilm-rerank"


class LocalReranker:
    """A ``RerankModel`` over any ``EmbeddingModel`` (the local MiniLM in practice)."""

    def __init__(self, embedder: EmbeddingModel) -> None:
        self._embedder = embedder

    async def rerank(
        self, query: str, documents: list[str], request: JSONObject | None = None
    ) -> Ranking:
        found = await blended_relevance(query, documents, self._embedder)
        ranked = sorted(enumerate(found.scores), key=lambda item: (-item[1], item[0]))
        top_n = (request or {}).get("top_n")
        if isinstance(top_n, int) and top_n > 0:
            ranked = ranked[:top_n]
        return Ranking([(i, round(float(s), 6)) for i, s in ranked], found.tokens, MODEL_ID)
