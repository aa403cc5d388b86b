"""`POST /v1/embeddings`: parse, call the gateway, render in OpenAI's shape."""

from __future__ import annotations

import base64

import numpy as np
from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.errors import InvalidRequest
from propylon.gateway.call import CallInfo
from propylon.gateway.embedding_input import embedding_texts
from propylon.http.auth import authenticate
from propylon.http.client_watch import ClientWatch
from propylon.http.context import services
from propylon.http.json import json_response, read_json_object
from propylon.http.openapi import JSON_OBJECT_BODY

router = APIRouter()


@router.post("/v1/embeddings", openapi_extra=JSON_OBJECT_BODY, tags=["gateway"])
async def create_embeddings(request: Request) -> Response:
    """OpenAI-compatible embeddings, as floats or base64 little-endian float32."""
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes, keep_text=True)
    texts = embedding_texts(body.get("input"))
    encoding = body.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise InvalidRequest(
            "`encoding_format` must be `float` or `base64`.", param="encoding_format"
        )
    call = request.state.call = CallInfo(principal=await authenticate(request))
    with ClientWatch(request.receive):
        result = await svc.embeddings.embed(texts, body, call)
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(vector, encoding)}
        for i, vector in enumerate(result.vectors)
    ]
    tokens = result.prompt_tokens or 0  # the gateway's count, its estimate when it had none
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return json_response(
        {"object": "list", "data": data, "model": body["model"], "usage": usage},
        headers=call.headers(),
    )


def _encode(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
