"""`POST /v1/rerank`: documents ordered by relevance to a query, in the shape Cohere, Jina,
vLLM and LiteLLM share."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.gateway.call import CallInfo
from propylon.gateway.rerank_request import RerankRequest
from propylon.http.auth import authenticate
from propylon.http.client_watch import ClientWatch
from propylon.http.context import services
from propylon.http.json import json_response, read_json_object
from propylon.http.openapi import RERANK_BODY

router = APIRouter()


@router.post("/v1/rerank", openapi_extra=RERANK_BODY, tags=["gateway"])
async def create_rerank(request: Request) -> Response:
    """`results` (`index`, `relevance_score`, `document` when asked) best first, `top_n` of
    them, routed to the model's rerank deployments."""
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes, keep_text=True)
    parsed = RerankRequest.parse(body)
    call = request.state.call = CallInfo(principal=await authenticate(request), endpoint="rerank")
    with ClientWatch(request.receive):
        ranking = await svc.rerank.rerank(
            parsed.query, parsed.documents, parsed.upstream_fields(), call
        )
    return json_response(parsed.render(ranking, call.request_id), headers=call.headers())
