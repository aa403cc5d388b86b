"""`/admin/cache/`: purge cached answers by tenant or model, and read the cache's counters.

Authorised like the rest of `/admin/` (``PROPYLON_ADMIN_KEY`` or an API key with the
``admin`` feature). A purge reaches every replica when the exact cache is in Redis.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.http.auth import authenticate_admin, authenticate_operator, operator_required
from propylon.http.context import services
from propylon.http.json import json_response

router = APIRouter(prefix="/admin/cache", tags=["admin"])


@router.delete("/tenants/{tenant_id}")
async def purge_tenant(request: Request, tenant_id: str) -> Response:
    """Delete every cached answer of one tenant (by tenant id): operators, or that tenant's
    admin."""
    principal = await authenticate_admin(request)
    if not principal.administers(tenant_id):
        raise operator_required()
    purged = await services(request).cache.purge(tenant_id=tenant_id)
    return json_response({"tenant_id": tenant_id, "purged": purged})


@router.delete("/models/{model}")
async def purge_model(request: Request, model: str) -> Response:
    """Delete every cached answer of one model (public name or alias), across tenants."""
    await authenticate_operator(request)
    purged = await services(request).cache.purge(model=model)
    return json_response({"model": model, "purged": purged})


@router.get("/stats")
async def cache_stats(request: Request) -> Response:
    """Hits, misses, bypasses, stores, second-check refusals and errors since start."""
    await authenticate_operator(request)
    return json_response(services(request).cache.stats.snapshot())
