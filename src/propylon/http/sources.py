"""Sources of a collection over HTTP: parse, call ``services.sources``, render.

`POST /v1/collections/{id}/sources` takes `{"type": "url" | "folder" | "s3", "config": {…},
"interval_s", "secret_access_key"}` and answers 201 with the source and the job of its first
sync; `POST …/sources/{source_id}/sync` enqueues another (202). A source never shows its
secret.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.http.collections import rag_principal
from propylon.http.context import services
from propylon.http.json import json_response, read_json_object
from propylon.http.openapi import JSON_OBJECT_BODY

router = APIRouter(tags=["collections"])


@router.post("/v1/collections/{collection_id}/sources", openapi_extra=JSON_OBJECT_BODY)
async def create_source(collection_id: str, request: Request) -> Response:
    principal = await rag_principal(request)
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes)
    row = await svc.sources.create(
        principal.tenant_id, collection_id, body, key_id=principal.key_id
    )
    return json_response({"object": "source", **row}, status=201)


@router.get("/v1/collections/{collection_id}/sources")
async def list_sources(collection_id: str, request: Request) -> Response:
    principal = await rag_principal(request)
    rows = await services(request).sources.list_all(principal.tenant_id, collection_id)
    return json_response({"object": "list", "data": [{"object": "source", **r} for r in rows]})


@router.get("/v1/collections/{collection_id}/sources/{source_id}")
async def get_source(collection_id: str, source_id: str, request: Request) -> Response:
    principal = await rag_principal(request)
    row = await services(request).sources.get(principal.tenant_id, collection_id, source_id)
    return json_response({"object": "source", **row})


@router.post("/v1/collections/{collection_id}/sources/{source_id}/sync")
async def sync_source(collection_id: str, source_id: str, request: Request) -> Response:
    """Enqueue a sync (or return the one waiting or running): 202 with `job_id`."""
    principal = await rag_principal(request)
    job_id = await services(request).sources.sync(principal.tenant_id, collection_id, source_id)
    return json_response({"object": "source.sync", "id": source_id, "job_id": job_id}, status=202)


@router.delete("/v1/collections/{collection_id}/sources/{source_id}")
async def delete_source(collection_id: str, source_id: str, request: Request) -> Response:
    """Deletes the source and the documents only it brought in."""
    principal = await rag_principal(request)
    deleted = await services(request).sources.delete(principal.tenant_id, collection_id, source_id)
    return json_response({"id": deleted, "object": "source.deleted", "deleted": True})
