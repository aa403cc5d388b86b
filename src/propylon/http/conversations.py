"""`/v1/conversations`: OpenAI's Conversations API (ids `conv_…`), and forgetting a RAG
answer's server-side conversation (`DELETE` of its UUID)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.errors import NotFound, PermissionDenied
from propylon.http.auth import authenticate
from propylon.http.context import services
from propylon.http.json import json_response, read_json_object
from propylon.http.openapi import JSON_OBJECT_BODY
from propylon.rag.conversations import NEW_CONVERSATION, parse_conversation_id

router = APIRouter(tags=["gateway"])
_OPENAI = "conv_"  # the ids this API makes; a RAG conversation's id is a UUID


@router.post("/v1/conversations", openapi_extra=JSON_OBJECT_BODY)
async def create_conversation(request: Request) -> Response:
    """A conversation (`{"items": […], "metadata": {…}}`, both optional) to name as
    `conversation` on `/v1/responses`."""
    principal = await authenticate(request)
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes, optional=True)
    return json_response(await svc.responses.conversations.create(principal.tenant_id, body))


@router.get("/v1/conversations/{conversation_id}")
async def get_conversation(conversation_id: str, request: Request) -> Response:
    principal = await authenticate(request)
    conversations = services(request).responses.conversations
    return json_response(await conversations.get(principal.tenant_id, conversation_id))


@router.post("/v1/conversations/{conversation_id}", openapi_extra=JSON_OBJECT_BODY)
async def update_conversation(conversation_id: str, request: Request) -> Response:
    """Replace the conversation's `metadata`."""
    tenant_id, body = await _tenant_and_body(request)
    conversations = services(request).responses.conversations
    return json_response(await conversations.update(tenant_id, conversation_id, body))


@router.delete("/v1/conversations/{conversation_id}")
async def delete_conversation(conversation_id: str, request: Request) -> Response:
    """A conversation of this API (`conv_…`) with its items, or a RAG answer's server-side
    conversation (its UUID; the key needs `rag`)."""
    principal = await authenticate(request)
    svc = services(request)
    if conversation_id.startswith(_OPENAI):
        deleted = await svc.responses.conversations.delete(principal.tenant_id, conversation_id)
        return json_response(deleted)
    if not principal.has_feature("rag"):
        raise PermissionDenied("This API key may not use collections (feature `rag`).")
    if conversation_id == NEW_CONVERSATION:  # "new" starts one; there is none to delete
        raise NotFound(f"No conversation `{conversation_id}`.", param="conversation_id")
    conversation = parse_conversation_id(conversation_id)
    assert conversation is not None
    await svc.answers.forget(principal.tenant_id, conversation)
    return json_response({"id": conversation, "object": "conversation.deleted", "deleted": True})


@router.get("/v1/conversations/{conversation_id}/items")
async def list_items(conversation_id: str, request: Request) -> Response:
    """The items, `order=desc` (default) or `asc`, `limit` 1-100 (20), `after` an item id."""
    principal = await authenticate(request)
    conversations = services(request).responses.conversations
    page = await conversations.list_items(
        principal.tenant_id, conversation_id, dict(request.query_params)
    )
    return json_response(page)


@router.post("/v1/conversations/{conversation_id}/items", openapi_extra=JSON_OBJECT_BODY)
async def add_items(conversation_id: str, request: Request) -> Response:
    """`{"items": […]}` (up to 20) appended; the items as stored."""
    tenant_id, body = await _tenant_and_body(request)
    conversations = services(request).responses.conversations
    return json_response(await conversations.add_items(tenant_id, conversation_id, body))


@router.get("/v1/conversations/{conversation_id}/items/{item_id}")
async def get_item(conversation_id: str, item_id: str, request: Request) -> Response:
    principal = await authenticate(request)
    conversations = services(request).responses.conversations
    return json_response(
        await conversations.get_item(principal.tenant_id, conversation_id, item_id)
    )


@router.delete("/v1/conversations/{conversation_id}/items/{item_id}")
async def delete_item(conversation_id: str, item_id: str, request: Request) -> Response:
    """The item removed; the conversation is returned."""
    principal = await authenticate(request)
    conversations = services(request).responses.conversations
    left = await conversations.delete_item(principal.tenant_id, conversation_id, item_id)
    return json_response(left)


async def _tenant_and_body(request: Request) -> tuple[str, dict[str, Any]]:
    """The caller's tenant and the request's JSON object."""
    principal = await authenticate(request)
    body = await read_json_object(request, services(request).settings.max_body_bytes)
    return principal.tenant_id, body
