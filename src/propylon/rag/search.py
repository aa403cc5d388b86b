"""Search over a tenant's collections: dense, keyword (BM25) and hybrid.

* ``dense``: the query embedded with each collection's embeddings model (through the gateway's
  embeddings path), nearest chunks by cosine similarity (pgvector HNSW).
* ``keyword``: Lucene BM25 over the ingestion's postings (``propylon.rag.bm25``).
* ``hybrid``: both, each taking ``candidates`` hits, fused either by reciprocal-rank fusion
  (``Σ w / (k + rank)``) or by a weighted sum ``w · dense + (1 − w) · bm25`` of scores
  normalised per query, min-max (``weighted``) or to z-scores (``zscore``); a side that missed
  a chunk contributes its lowest normalised score.

With a reranker (``retrieval.reranker``), the best ``candidates`` hits of the chosen mode are
handed to that rerank model (through the gateway chain, as the caller's internal call) and
returned in its order, ``score`` being its relevance score; if the reranker fails, the hits
keep the mode's order (logged), so search never fails for want of a second stage.

``filter`` is a JSON object matched against ``documents.metadata`` by containment
(``{"lang": "en", "tags": ["a"]}`` matches documents whose metadata has ``lang = "en"`` and a
``tags`` array containing ``"a"``). Every collection is looked up with the tenant, so another
tenant's collection is ``NotFound`` (404) and never searched.
"""

from __future__ import annotations

import logging
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from psycopg.types.json import Jsonb

from propylon.db.database import Database
from propylon.errors import InvalidRequest, NotFound, PropylonError
from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import EmbeddingService, RerankService
from propylon.principal import Principal
from propylon.rag.bm25 import BM25Index
from propylon.rag.retrieval_queries import QUERIES

Mode = Literal["dense", "keyword", "hybrid"]
Fusion = Literal["rrf", "weighted", "zscore"]
MODES: tuple[Mode, ...] = ("dense", "keyword", "hybrid")
MAX_TOP_K = 100

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FusionParams:
    method: Fusion = "zscore"
    rrf_k: int = 60
    dense_weight: float = 0.45
    candidates: int = 100


@dataclass(frozen=True, slots=True)
class RerankParams:
    """The second stage: ``model`` (a rerank model) reorders the best ``candidates`` hits."""

    model: str
    candidates: int = 20


@dataclass(frozen=True, slots=True)
class SearchRequest:
    query: str
    top_k: int = 8
    mode: Mode = "hybrid"
    filter: dict[str, Any] = field(default_factory=dict)
    fusion: FusionParams | None = None  # None: the service's defaults

    @staticmethod
    def parse(body: dict[str, Any], *, default_top_k: int) -> SearchRequest:
        """From a JSON body ``{"query", "top_k", "mode", "filter"}``; bad fields are 400."""
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequest(
                "`query` is required and must be a non-empty string.", param="query"
            )
        top_k = body.get("top_k", default_top_k)
        if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= MAX_TOP_K:
            raise InvalidRequest(
                f"`top_k` must be an integer from 1 to {MAX_TOP_K}.", param="top_k"
            )
        mode = body.get("mode", "hybrid")
        if mode not in MODES:
            raise InvalidRequest(
                "`mode` must be one of `dense`, `keyword`, `hybrid`.", param="mode"
            )
        filter_ = body.get("filter") or {}
        if not isinstance(filter_, dict):
            raise InvalidRequest(
                "`filter` must be a JSON object (metadata to match).", param="filter"
            )
        return SearchRequest(query, top_k, mode, filter_)


@dataclass(slots=True)
class SearchHit:
    """One chunk: where it is (document, offsets into ``documents.text``, page, headings)
    and how it scored (``score`` is the mode's; ``dense_score``/``keyword_score`` the sides')."""

    chunk_id: int
    collection_id: str
    document_id: str
    ordinal: int
    text: str
    char_start: int
    char_end: int
    page: int | None
    page_end: int | None
    heading_path: list[str]
    risk_score: float | None
    external_id: str | None
    filename: str | None
    metadata: dict[str, Any]
    score: float = 0.0
    dense_score: float | None = None
    keyword_score: float | None = None
    rerank_score: float | None = None
    page_breaks: list[int] = field(default_factory=list)
    location: str | None = None  # "slide 3", "sheet Sales, rows 2-41"; None for printed pages
    ocr_confidence: float | None = None  # the text was read from an image, this surely

    def page_at(self, offset: int) -> int | None:
        """The page holding the document offset ``offset`` (inside this chunk)."""
        if self.page is None:
            return None
        return self.page + bisect_right(self.page_breaks, offset)

    def to_json(self) -> dict[str, Any]:
        return {
            "object": "search.result",
            "chunk_id": self.chunk_id,
            "collection_id": self.collection_id,
            "document_id": self.document_id,
            "external_id": self.external_id,
            "filename": self.filename,
            "ordinal": self.ordinal,
            "text": self.text,
            "char_start": self.char_start,
            "char_end": self.char_end,
            "page": self.page,
            "page_end": self.page_end,
            "location": self.location,
            "ocr": self.ocr_confidence is not None,
            "ocr_confidence": self.ocr_confidence,
            "heading_path": self.heading_path,
            "risk_score": self.risk_score,
            "metadata": self.metadata,
            "score": self.score,
            "scores": {
                "dense": self.dense_score,
                "keyword": self.keyword_score,
                "rerank": self.rerank_score,
            },
        }


@dataclass(frozen=True, slots=True)
class CollectionRef:
    id: str
    name: str
    embedding_model: str


Ranked = list[tuple[int, float]]  # (chunk id, score), best first


class SearchService:
    """Runs searches for a principal over its own collections."""

    def __init__(
        self,
        database: Database,
        embeddings: EmbeddingService,
        bm25: BM25Index,
        fusion: FusionParams | None = None,
        *,
        reranker: RerankService | None = None,
        rerank: RerankParams | None = None,
    ) -> None:
        self._database = database
        self._embeddings = embeddings
        self._bm25 = bm25
        self.fusion = fusion or FusionParams()
        self._reranker = reranker
        self.rerank = rerank  # None: no second stage

    async def resolve(self, tenant_id: str, refs: Sequence[str]) -> list[CollectionRef]:
        """The tenant's collections named (by id or name) in ``refs``; any unknown is 404."""
        if not refs:
            raise InvalidRequest("Name at least one collection.", param="collections")
        async with self._database.connection() as conn:
            cur = await conn.execute(
                QUERIES["collections_of_tenant"], {"tenant_id": tenant_id, "refs": list(refs)}
            )
            rows = await cur.fetchall()
        found = {str(r["id"]): r for r in rows} | {str(r["name"]): r for r in rows}
        for ref in refs:
            if ref not in found:
                raise NotFound(f"No collection `{ref}`.", param="collection_id")
        unique = {str(r["id"]): r for r in rows}
        return [
            CollectionRef(str(r["id"]), str(r["name"]), str(r["embedding_model"]))
            for r in unique.values()
        ]

    async def search(
        self, principal: Principal, refs: Sequence[str], request: SearchRequest
    ) -> list[SearchHit]:
        collections = await self.resolve(principal.tenant_id, refs)
        return await self.search_collections(principal, collections, request)

    async def search_collections(
        self, principal: Principal | None, collections: list[CollectionRef], request: SearchRequest
    ) -> list[SearchHit]:
        fusion = request.fusion or self.fusion
        rerank = self.rerank if self._reranker is not None else None
        keep = max(request.top_k, rerank.candidates) if rerank is not None else request.top_k
        want = keep if request.mode != "hybrid" else max(fusion.candidates, keep)
        dense, keyword = await self.rankings(principal, collections, request, want)
        if request.mode == "dense":
            ranked = dense[:keep]
        elif request.mode == "keyword":
            ranked = keyword[:keep]
        else:
            ranked = fuse(dense, keyword, fusion)[:keep]
        hits = await self._rows([chunk_id for chunk_id, _ in ranked])
        dense_scores, keyword_scores = dict(dense), dict(keyword)
        out: list[SearchHit] = []
        for chunk_id, score in ranked:
            hit = hits.get(chunk_id)
            if hit is None:  # deleted between the two queries
                continue
            hit.score = score
            hit.dense_score = dense_scores.get(chunk_id)
            hit.keyword_score = keyword_scores.get(chunk_id)
            out.append(hit)
        if rerank is not None and out:
            out = await self._reranked(principal, request.query, out, rerank)
        return out[: request.top_k]

    async def _reranked(
        self, principal: Principal | None, query: str, hits: list[SearchHit], rerank: RerankParams
    ) -> list[SearchHit]:
        """``hits`` in the rerank model's order; in their own order if it fails."""
        reranker = self._reranker
        if reranker is None:
            return hits
        call = CallInfo(principal=principal, endpoint="rag", origin="internal")
        try:
            ranking = await reranker.rerank(
                query, [hit.text for hit in hits], {"model": rerank.model}, call
            )
        except PropylonError as exc:
            log.warning("reranker %s failed; hits kept in search order: %s", rerank.model, exc)
            return hits
        out: list[SearchHit] = []
        ranked: set[int] = set()
        for index, score in ranking.results:
            if index in ranked:
                continue
            ranked.add(index)
            hit = hits[index]
            hit.rerank_score = hit.score = score
            out.append(hit)
        out += [hit for index, hit in enumerate(hits) if index not in ranked]
        return out

    async def rankings(
        self,
        principal: Principal | None,
        collections: list[CollectionRef],
        request: SearchRequest,
        limit: int,
    ) -> tuple[Ranked, Ranked]:
        """The dense and keyword rankings (``limit`` each) that ``request.mode`` uses."""
        dense: Ranked = []
        keyword: Ranked = []
        if request.mode in ("dense", "hybrid"):
            dense = await self._dense(principal, collections, request, limit)
        if request.mode in ("keyword", "hybrid"):
            keyword = await self._keyword(collections, request, limit)
        return dense, keyword

    async def _dense(
        self,
        principal: Principal | None,
        collections: list[CollectionRef],
        request: SearchRequest,
        limit: int,
    ) -> Ranked:
        by_model: dict[str, list[str]] = {}
        for c in collections:
            by_model.setdefault(c.embedding_model, []).append(c.id)
        ranked: Ranked = []
        for model, ids in by_model.items():
            call = CallInfo(principal=principal, endpoint="rag", origin="internal")
            result = await self._embeddings.embed([request.query], {"model": model}, call)
            vector = "[" + ",".join(repr(float(x)) for x in result.vectors[0]) + "]"
            async with self._database.connection() as conn:
                await conn.execute(QUERIES["hnsw_settings"], {"ef_search": str(max(40, limit))})
                cur = await conn.execute(
                    QUERIES["dense_search"],
                    {
                        "vector": vector,
                        "collection_ids": ids,
                        "filter": Jsonb(request.filter),
                        "limit": limit,
                    },
                )
                ranked += [(int(r["chunk_id"]), float(r["score"])) for r in await cur.fetchall()]
        ranked.sort(key=lambda item: (-item[1], item[0]))
        return ranked[:limit]

    async def _keyword(
        self, collections: list[CollectionRef], request: SearchRequest, limit: int
    ) -> Ranked:
        ranked: Ranked = []
        terms = self._bm25.analyzer.terms(request.query)
        if not terms:
            return []
        async with self._database.connection() as conn:
            for c in collections:
                hits = await self._bm25.search_terms(
                    conn, c.id, terms, limit=limit, metadata_filter=request.filter
                )
                ranked += [(hit.chunk_id, hit.score) for hit in hits]
        ranked.sort(key=lambda item: (-item[1], item[0]))
        return ranked[:limit]

    async def _rows(self, ids: list[int]) -> dict[int, SearchHit]:
        if not ids:
            return {}
        async with self._database.connection() as conn:
            cur = await conn.execute(QUERIES["chunk_rows"], {"ids": ids})
            rows = await cur.fetchall()
        return {
            int(r["chunk_id"]): SearchHit(
                chunk_id=int(r["chunk_id"]),
                collection_id=str(r["collection_id"]),
                document_id=str(r["document_id"]),
                ordinal=int(r["ordinal"]),
                text=r["text"],
                char_start=int(r["char_start"]),
                char_end=int(r["char_end"]),
                page=r["page"],
                page_end=r["page_end"],
                page_breaks=list(r["page_breaks"] or []),
                location=r["location"],
                ocr_confidence=r["ocr_confidence"],
                heading_path=list(r["heading_path"] or []),
                risk_score=r["risk_score"],
                external_id=r["external_id"],
                filename=r["filename"],
                metadata=dict(r["metadata"] or {}),
            )
            for r in rows
        }


def fuse(dense: Ranked, keyword: Ranked, params: FusionParams) -> Ranked:
    """Both rankings fused into one, best first (ties by chunk id)."""
    w = params.dense_weight
    scores: dict[int, float] = {}
    if params.method == "rrf":
        for weight, ranking in ((w, dense), (1.0 - w, keyword)):
            for rank, (chunk_id, _) in enumerate(ranking, start=1):
                scores[chunk_id] = scores.get(chunk_id, 0.0) + 2 * weight / (params.rrf_k + rank)
    else:
        normalise = _min_max if params.method == "weighted" else _z_scores
        sides = [(w, normalise(dense)), (1.0 - w, normalise(keyword))]
        everything = {chunk_id for _, side in sides for chunk_id in side}
        for weight, side in sides:
            floor = min(side.values(), default=0.0)  # a chunk this side missed: its lowest
            for chunk_id in everything:
                scores[chunk_id] = scores.get(chunk_id, 0.0) + weight * side.get(chunk_id, floor)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def _z_scores(ranking: Ranked) -> dict[int, float]:
    if not ranking:
        return {}
    values = [score for _, score in ranking]
    mean = sum(values) / len(values)
    std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
    return {chunk_id: (score - mean) / std if std > 0 else 0.0 for chunk_id, score in ranking}


def _min_max(ranking: Ranked) -> dict[int, float]:
    if not ranking:
        return {}
    values = [score for _, score in ranking]
    low, high = min(values), max(values)
    span = high - low
    return {chunk_id: (score - low) / span if span > 0 else 1.0 for chunk_id, score in ranking}
