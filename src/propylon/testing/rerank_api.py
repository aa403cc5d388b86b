"""The rerank API (``POST /v1/rerank``) as vLLM, Jina and LiteLLM serve it (Cohere's v2 shape).

Request: ``model``, ``query``, ``documents`` (strings or ``{"text": ...}``), ``top_n``,
``return_documents``. Answer: ``id``, ``model``, ``usage.total_tokens`` and ``results`` best
first, each ``{"index", "relevance_score", "document": {"text"}}`` (``document`` left out
when ``return_documents`` is false). Relevance is the cosine similarity of the fake's
word-hash embeddings (``propylon.testing.embedding``) mapped to [0, 1]: documents sharing
more of the query's words rank higher, deterministically.
"""

from __future__ import annotations

import secrets

import numpy as np
from aiohttp import web

from propylon.testing import body_fields
from propylon.testing.completion import count_tokens
from propylon.testing.embedding import embed
from propylon.testing.exchange import Exchange
from propylon.testing.wire_error import invalid_request

_DIMENSIONS = 256


async def rerank(exchange: Exchange) -> web.Response:
    body = exchange.body
    model = body_fields.required_str(body, "model")
    query = body_fields.required_str(body, "query")
    documents = _documents(body.get("documents"))
    top_n = body_fields.optional_positive_int(body, "top_n")
    query_vector = embed(query, _DIMENSIONS)
    scores = [
        (index, round((float(np.dot(query_vector, embed(text, _DIMENSIONS))) + 1.0) / 2.0, 6))
        for index, text in enumerate(documents)
    ]
    scores.sort(key=lambda item: (-item[1], item[0]))
    with_documents = body.get("return_documents") is not False
    results = [
        {"index": index, "relevance_score": score}
        | ({"document": {"text": documents[index]}} if with_documents else {})
        for index, score in scores[:top_n]
    ]
    return exchange.json(
        {
            "id": "rerank-" + secrets.token_hex(12),
            "model": model,
            "usage": {"total_tokens": count_tokens(query, *documents)},
            "results": results,
        }
    )


def _documents(value: object) -> list[str]:
    if not isinstance(value, list) or not value:
        raise invalid_request("documents: Field required (a non-empty list)", param="documents")
    texts: list[str] = []
    for index, item in enumerate(value):
        text = item.get("text") if isinstance(item, dict) else item
        if not isinstance(text, str):
            raise invalid_request(
                f"documents.{index}: a string or an object with `text`", param="documents"
            )
        texts.append(text)
    return texts
