"""Search and answers over collections: parse, call one service method, render.

`POST /v1/collections/{id}/search` `{"query", "top_k", "mode", "filter"}`;
`POST /v1/search` `{"collections": [...], "query", "top_k", "mode", "filter"}` (tenant-wide);
`POST /v1/collections/{id}/answer` `{"question", "top_k", "mode", "filter", "model",
"conversation_id"}`; `DELETE /v1/conversations/{id}`. Another tenant's collection or
conversation is 404. (`rag/<collection>` on `/v1/chat/completions` is `propylon.rag.chat`.)
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.errors import InvalidRequest, PermissionDenied
from propylon.gateway.call import CallInfo
from propylon.http.auth import authenticate
from propylon.http.client_watch import ClientWatch
from propylon.http.context import services
from propylon.http.json import json_response, read_json_object
from propylon.http.openapi import JSON_OBJECT_BODY
from propylon.principal import Principal
from propylon.rag.chat import parse_answer
from propylon.rag.search import SearchHit, SearchRequest

router = APIRouter(tags=["retrieval"])


async def _principal(request: Request) -> Principal:
    principal = await authenticate(request)
    if not principal.has_feature("rag"):
        raise PermissionDenied("This API key may not use collections (feature `rag`).")
    return principal


def _results(hits: list[SearchHit], request: SearchRequest) -> Response:
    return json_response(
        {"object": "list", "mode": request.mode, "data": [hit.to_json() for hit in hits]}
    )


@router.post("/v1/collections/{collection_id}/search", openapi_extra=JSON_OBJECT_BODY)
async def search_collection(collection_id: str, request: Request) -> Response:
    """Chunks of one collection: `mode` `hybrid` (default), `dense` or `keyword`."""
    principal = await _principal(request)
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes)
    parsed = SearchRequest.parse(body, default_top_k=svc.settings.retrieval.top_k)
    return _results(await svc.search.search(principal, [collection_id], parsed), parsed)


@router.post("/v1/search", openapi_extra=JSON_OBJECT_BODY)
async def search_tenant(request: Request) -> Response:
    """Chunks across the chosen collections (`collections`: names or ids) of the tenant."""
    principal = await _principal(request)
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes)
    refs = body.get("collections")
    if not isinstance(refs, list) or not refs or not all(isinstance(r, str) for r in refs):
        raise InvalidRequest(
            "`collections` must be a non-empty array of names or ids.", param="collections"
        )
    parsed = SearchRequest.parse(body, default_top_k=svc.settings.retrieval.top_k)
    return _results(await svc.search.search(principal, refs, parsed), parsed)


@router.post("/v1/collections/{collection_id}/answer", openapi_extra=JSON_OBJECT_BODY)
async def answer(collection_id: str, request: Request) -> Response:
    """An answer with numbered citations (document, chunk, offsets, page)."""
    principal = await _principal(request)
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes)
    call = request.state.call = CallInfo(principal=principal, endpoint="rag")
    with ClientWatch(request.receive):
        result = await svc.answers.answer(principal, parse_answer(collection_id, body), call)
    return json_response(result, headers=call.headers())
