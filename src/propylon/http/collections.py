"""Collections and documents over HTTP: parse, call ``services.collections``, render.

Uploads are `multipart/form-data` with the file in the field `file` (and optional fields
`external_id` and `metadata`, a JSON object), or JSON `{"text", "external_id", "metadata",
"filename"}`. A new upload answers 202 with the ingestion job's id (follow it at
`/v1/jobs/{id}`); the same bytes again answer 200 with the existing document and
`"duplicate": true`.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.datastructures import UploadFile
from starlette.responses import Response

from propylon.errors import InvalidRequest, PermissionDenied
from propylon.http.auth import authenticate
from propylon.http.context import services
from propylon.http.json import json_response, limit_body, read_json_object
from propylon.http.openapi import JSON_OBJECT_BODY
from propylon.params import int_param
from propylon.principal import Principal
from propylon.storable import check_storable

router = APIRouter(tags=["collections"])

_FORM_OVERHEAD = 64 * 1024  # an upload's body beyond the file: multipart envelope, fields


async def rag_principal(request: Request) -> Principal:
    principal = await authenticate(request)
    if not principal.has_feature("rag"):
        raise PermissionDenied("This API key may not use collections (feature `rag`).")
    return principal


@router.post("/v1/collections", openapi_extra=JSON_OBJECT_BODY)
async def create_collection(request: Request) -> Response:
    """A new collection: `name`, optional `description`, `chunking`
    (`{"max_tokens", "overlap_tokens"}`), `embedding_model` and `metadata`."""
    principal = await rag_principal(request)
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes)
    name = body.get("name")
    if not isinstance(name, str):
        raise InvalidRequest("`name` is required and must be a string.", param="name")
    row = await svc.collections.create(
        principal.tenant_id,
        name=name,
        description=_optional(body, "description", str) or "",
        chunking=_optional(body, "chunking", dict),
        embedding_model=_optional(body, "embedding_model", str),
        metadata=_optional(body, "metadata", dict),
    )
    return json_response(_collection(row), status=201)


@router.get("/v1/collections")
async def list_collections(request: Request) -> Response:
    principal = await rag_principal(request)
    rows = await services(request).collections.list_all(principal.tenant_id)
    return json_response({"object": "list", "data": [_collection(row) for row in rows]})


@router.get("/v1/collections/{collection_id}")
async def get_collection(collection_id: str, request: Request) -> Response:
    """By id or name; another tenant's collection is 404."""
    principal = await rag_principal(request)
    row = await services(request).collections.get(principal.tenant_id, collection_id)
    return json_response(_collection(row))


@router.delete("/v1/collections/{collection_id}")
async def delete_collection(collection_id: str, request: Request) -> Response:
    """Deletes the collection with its documents, chunks and index."""
    principal = await rag_principal(request)
    deleted = await services(request).collections.delete(principal.tenant_id, collection_id)
    return json_response({"id": deleted, "object": "collection.deleted", "deleted": True})


@router.post("/v1/collections/{collection_id}/documents")
async def add_document(collection_id: str, request: Request) -> Response:
    """Upload a document for ingestion: 202 with `job_id`, or 200 when already ingested."""
    principal = await rag_principal(request)
    svc = services(request)
    fields = await _upload_fields(request, svc.settings.rag.max_upload_bytes)
    accepted = await svc.collections.add_document(
        principal.tenant_id, collection_id, key_id=principal.key_id, **fields
    )
    body = {
        **_document(accepted.document),
        "job_id": accepted.job_id,
        "duplicate": accepted.duplicate,
    }
    return json_response(body, status=200 if accepted.duplicate else 202)


@router.get("/v1/collections/{collection_id}/documents")
async def list_documents(collection_id: str, request: Request) -> Response:
    """A page of the collection's documents: `limit` (1-1000, default 100) from `offset`;
    `has_more` says whether more follow."""
    principal = await rag_principal(request)
    limit = _int_param(request, "limit", 100, 1, 1000)
    offset = _int_param(request, "offset", 0, 0, 10**9)
    rows = await services(request).collections.list_documents(
        principal.tenant_id, collection_id, limit=limit + 1, offset=offset
    )  # one more than asked tells whether there are more
    data = [_document(row) for row in rows[:limit]]
    return json_response({"object": "list", "data": data, "has_more": len(rows) > limit})


@router.get("/v1/collections/{collection_id}/documents/{document_id}")
async def get_document(collection_id: str, document_id: str, request: Request) -> Response:
    principal = await rag_principal(request)
    row = await services(request).collections.get_document(
        principal.tenant_id, collection_id, document_id
    )
    return json_response(_document(row))


@router.get("/v1/collections/{collection_id}/documents/{document_id}/text")
async def document_text(collection_id: str, document_id: str, request: Request) -> Response:
    """``?start=&end=``: that span of the document's extracted text (citation offsets)."""
    principal = await rag_principal(request)
    start = _int_param(request, "start", 0, 0, 10**9)
    end = _int_param(request, "end", start + 2000, 0, 10**9)
    row = await services(request).collections.document_text(
        principal.tenant_id, collection_id, document_id, start, end
    )
    return json_response(row)


@router.delete("/v1/collections/{collection_id}/documents/{document_id}")
async def delete_document(collection_id: str, document_id: str, request: Request) -> Response:
    principal = await rag_principal(request)
    await services(request).collections.delete_document(
        principal.tenant_id, collection_id, document_id
    )
    return json_response({"id": document_id, "object": "document.deleted", "deleted": True})


async def _upload_fields(request: Request, max_bytes: int) -> dict[str, Any]:
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        body = await read_json_object(request, max_bytes + _FORM_OVERHEAD)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            raise InvalidRequest(
                "Send a file as multipart field `file`, or JSON with a non-empty `text`.",
                param="text",
            )
        return {
            "content": text.encode("utf-8"),
            "filename": _optional(body, "filename", str),
            "media_type": "text/plain",
            "external_id": _optional(body, "external_id", str),
            "metadata": _optional(body, "metadata", dict),
        }
    too_large = f"The file is larger than the upload limit of {max_bytes:,} bytes."
    # Counted as it streams (with room for the multipart envelope and the small fields).
    form = await limit_body(request, max_bytes + _FORM_OVERHEAD, too_large).form(
        max_files=1, max_fields=10
    )
    try:
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidRequest("The multipart field `file` is missing.", param="file")
        content = await upload.read(max_bytes + 1)
        metadata = form.get("metadata")
        external_id = form.get("external_id")
        check_storable({"filename": upload.filename, "external_id": external_id})
        return {
            "content": content,
            "filename": upload.filename,
            "media_type": upload.content_type,
            "external_id": external_id if isinstance(external_id, str) and external_id else None,
            "metadata": _metadata_field(metadata) if isinstance(metadata, str) else None,
        }
    finally:
        await form.close()


def _metadata_field(raw: str) -> dict[str, Any] | None:
    if not raw.strip():
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest("`metadata` must be a JSON object.", param="metadata")
    check_storable(value, "metadata")
    return value


def _optional(body: dict[str, Any], key: str, kind: type) -> Any:
    value = body.get(key)
    if value is not None and not isinstance(value, kind):
        raise InvalidRequest(f"`{key}` must be a {kind.__name__} when given.", param=key)
    return value


def _int_param(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    return default if raw is None else int_param(raw, name, low, high)


def _collection(row: dict[str, Any]) -> dict[str, Any]:
    return {"object": "collection", **row}


def _document(row: dict[str, Any]) -> dict[str, Any]:
    return {"object": "document", **row}
