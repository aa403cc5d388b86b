"""The body of ``POST /v1/rerank``, in the shape Cohere, Jina, vLLM and LiteLLM share.

``{"model", "query", "documents": [str | {"text": str}], "top_n"?, "return_documents"?}``.
Parsed once at the edge; a bad field is a 400 naming it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from propylon.errors import InvalidRequest
from propylon.gateway.protocol import JSONObject, Ranking

MAX_DOCUMENTS = 1000  # Cohere's limit; a larger list is a 400, not an hour of local scoring


@dataclass(frozen=True, slots=True)
class RerankRequest:
    model: str
    query: str
    documents: list[str]
    top_n: int | None
    return_documents: bool

    @staticmethod
    def parse(body: JSONObject) -> RerankRequest:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise InvalidRequest(
                "`model` is required and must be a non-empty string.", param="model"
            )
        query = body.get("query")
        if not isinstance(query, str) or not query.strip():
            raise InvalidRequest(
                "`query` is required and must be a non-empty string.", param="query"
            )
        documents = _documents(body.get("documents"))
        top_n = body.get("top_n")
        if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int)):
            raise InvalidRequest("`top_n` must be a positive integer.", param="top_n")
        if top_n is not None and top_n < 1:
            raise InvalidRequest("`top_n` must be a positive integer.", param="top_n")
        return_documents = body.get("return_documents", False)
        if not isinstance(return_documents, bool):
            raise InvalidRequest("`return_documents` must be a boolean.", param="return_documents")
        return RerankRequest(model, query, documents, top_n, return_documents)

    def upstream_fields(self) -> JSONObject:
        """What a deployment is sent besides the query and documents."""
        return {"model": self.model, "top_n": self.top_n}

    def render(self, ranking: Ranking, request_id: str | None) -> JSONObject:
        """The response: ``results`` best first (``top_n`` of them), with ``usage``."""
        results: list[JSONObject] = []
        for index, score in ranking.results[: self.top_n]:
            item: JSONObject = {"index": index, "relevance_score": score}
            if self.return_documents:
                item["document"] = {"text": self.documents[index]}
            results.append(item)
        return {
            "id": request_id or "",
            "model": self.model,
            "results": results,
            "usage": {"prompt_tokens": ranking.tokens, "total_tokens": ranking.tokens},
        }


def _documents(value: Any) -> list[str]:
    if not isinstance(value, list) or not value:
        raise InvalidRequest(
            '`documents` must be a non-empty array of strings or `{"text": ...}` objects.',
            param="documents",
        )
    if len(value) > MAX_DOCUMENTS:
        raise InvalidRequest(
            f"`documents` holds {len(value)} documents; at most {MAX_DOCUMENTS} per request.",
            param="documents",
        )
    out: list[str] = []
    for item in value:
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise InvalidRequest(
                "Each document must be a string or an object with a string `text`.",
                param="documents",
            )
        out.append(text)
    return out
