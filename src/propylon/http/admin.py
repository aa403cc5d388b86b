"""`/admin/`: tenants and API keys. Parse, call the access store, render.

Authorised by ``PROPYLON_ADMIN_KEY`` or an API key with the ``admin`` feature.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.access.budgets import Budget
from propylon.access.limits import Limits
from propylon.errors import InvalidRequest
from propylon.http.auth import authenticate_admin
from propylon.http.context import services
from propylon.http.json import json_response, read_json_object
from propylon.http.openapi import JSON_OBJECT_BODY

router = APIRouter(prefix="/admin", tags=["admin"])


@router.post("/tenants", openapi_extra=JSON_OBJECT_BODY)
async def create_tenant(request: Request) -> Response:
    """Create a tenant: `{"name", "limits": {"rpm", "tpm"}, "budget": {...}}`."""
    await authenticate_admin(request)
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes)
    tenant = await svc.access.create_tenant(
        _str(body, "name"), _policy(Limits, body, "limits"), _policy(Budget, body, "budget")
    )
    return json_response(tenant, status=201)


@router.get("/tenants")
async def list_tenants(request: Request) -> Response:
    await authenticate_admin(request)
    return json_response({"object": "list", "data": await services(request).access.list_tenants()})


@router.post("/keys", openapi_extra=JSON_OBJECT_BODY)
async def create_key(request: Request) -> Response:
    """Create a key (and its tenant when missing). The response holds the key, once."""
    await authenticate_admin(request)
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes)
    key, record = await svc.access.create_key(
        _str(body, "tenant"),
        name=str(body.get("name") or ""),
        models=_strings(body, "models"),
        features=_strings(body, "features"),
        limits=_policy(Limits, body, "limits"),
        budget=_policy(Budget, body, "budget"),
    )
    return json_response({**record.describe(), "key": key}, status=201)


@router.get("/keys")
async def list_keys(request: Request, tenant: str | None = None) -> Response:
    await authenticate_admin(request)
    records = await services(request).access.keys(tenant_name=tenant)
    return json_response({"object": "list", "data": [r.describe() for r in records]})


@router.post("/keys/{ref}/revoke")
async def revoke_key(request: Request, ref: str) -> Response:
    """Revoke a key by id, display prefix or name; every replica refuses it at once."""
    await authenticate_admin(request)
    return json_response((await services(request).access.revoke(ref)).describe())


@router.get("/keys/{ref}/usage")
async def key_usage(request: Request, ref: str) -> Response:
    """Requests, tokens and cost of a key per UTC day (latest first)."""
    await authenticate_admin(request)
    svc = services(request)
    await svc.usage.flush()  # include what this process has counted but not written yet
    return json_response(await svc.access.usage(ref))


def _str(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"`{field}` is required: a non-empty string.", param=field)
    return value


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
    try:
        return kind.parse(value)
    except (TypeError, ValueError) as exc:
        raise InvalidRequest(f"`{field}`: {exc}", param=field) from None
