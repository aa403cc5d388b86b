"""`/admin/`: tenants and API keys. Parse, call the access store, render.

An operator (``PROPYLON_ADMIN_KEY`` or the ``operator`` feature) administers every tenant; a
key with the ``admin`` feature administers its own tenant: its keys (never granting
``operator``), their usage and revocation. Another tenant's key is 404 to a tenant admin.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.access.budgets import Budget
from propylon.access.limits import Limits
from propylon.errors import InvalidRequest
from propylon.http.auth import authenticate_admin, authenticate_operator, operator_required
from propylon.http.context import services
from propylon.http.json import json_response, read_json_object
from propylon.http.openapi import JSON_OBJECT_BODY
from propylon.params import only_fields
from propylon.principal import TENANT_FEATURES, Principal

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post("/tenants", openapi_extra=JSON_OBJECT_BODY)
async def create_tenant(request: Request) -> Response:
    """Create a tenant: `{"name", "limits": {"rpm", "tpm"}, "budget": {...}}` (operators)."""
    await authenticate_operator(request)
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes)
    only_fields(body, ("name", "limits", "budget"), "")
    tenant = await svc.access.create_tenant(
        _str(body, "name"), _policy(Limits, body, "limits"), _policy(Budget, body, "budget")
    )
    return json_response(tenant, status=201)


@router.delete("/tenants/{ref}")
async def delete_tenant(request: Request, ref: str) -> Response:
    """Delete a tenant (by id or name) and everything kept of it: keys, collections and
    documents, jobs and runs, conversations, responses, MCP servers, cached answers, request
    log, feedback and traces (operators). The rows removed, per table."""
    await authenticate_operator(request)
    return json_response(await services(request).tenant_deletion.delete(ref))


@router.get("/tenants")
async def list_tenants(request: Request) -> Response:
    """Every tenant (operators), or the caller's own (tenant admins)."""
    principal = await authenticate_admin(request)
    tenants = await services(request).access.list_tenants()
    data = [t for t in tenants if principal.administers(t["id"])]
    return json_response({"object": "list", "data": data})


@router.post("/keys", openapi_extra=JSON_OBJECT_BODY)
async def create_key(request: Request) -> Response:
    """Create a key for `tenant`, a tenant's name (created when missing) or id (404 when
    unknown). The response holds the key, once.
    A tenant admin creates keys of its own tenant (`tenant` may be left out), without
    `operator`."""
    principal = await authenticate_admin(request)
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes)
    only_fields(body, ("tenant", "name", "models", "features", "limits", "budget"), "")
    features = _strings(body, "features")
    if principal.is_operator:
        tenant = _str(body, "tenant")
    else:
        tenant = body.get("tenant") or principal.tenant_name
        if tenant == principal.tenant_id:  # named by its id
            tenant = principal.tenant_name
        if tenant != principal.tenant_name or not set(features or ()) <= TENANT_FEATURES:
            raise operator_required()
    key, record = await svc.access.create_key(
        tenant,
        name=_optional_str(body, "name"),
        models=_strings(body, "models"),
        features=features,
        limits=_policy(Limits, body, "limits"),
        budget=_policy(Budget, body, "budget"),
    )
    return json_response({**record.describe(), "key": key}, status=201)


@router.get("/keys")
async def list_keys(request: Request, tenant: str | None = None) -> Response:
    """Keys of every tenant or of `tenant` (operators); of the caller's tenant (tenant admins)."""
    principal = await authenticate_admin(request)
    records = await services(request).access.keys(tenant_name=tenant, tenant_id=_scope(principal))
    return json_response({"object": "list", "data": [r.describe() for r in records]})


@router.post("/keys/{ref}/revoke")
async def revoke_key(request: Request, ref: str) -> Response:
    """Revoke a key by id, display prefix or name; every replica refuses it at once."""
    principal = await authenticate_admin(request)
    revoked = await services(request).revocation.revoke(ref, tenant_id=_scope(principal))
    return json_response(revoked.describe())


@router.get("/keys/{ref}/usage")
async def key_usage(request: Request, ref: str) -> Response:
    """Requests, tokens and cost of a key per UTC day (latest first)."""
    principal = await authenticate_admin(request)
    svc = services(request)
    await svc.usage.flush()  # include what this process has counted but not written yet
    return json_response(await svc.access.usage(ref, tenant_id=_scope(principal)))


def _scope(principal: Principal) -> str | None:
    """The tenant a caller's key lookups are limited to (None: every tenant)."""
    return None if principal.is_operator else principal.tenant_id


def _str(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"`{field}` is required: a non-empty string.", param=field)
    return value


def _optional_str(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"`{field}` must be a string.", param=field)
    return value or ""


def _strings(body: dict[str, Any], field: str) -> list[str] | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidRequest(f"`{field}` must be an array of strings.", param=field)
    return value


def _policy(kind: type[Limits] | type[Budget], body: dict[str, Any], field: str) -> Any:
    value = body.get(field)
    if value is not None and not isinstance(value, dict):
        raise InvalidRequest(f"`{field}` must be an object.", param=field)
    return kind.parse(value, field)
