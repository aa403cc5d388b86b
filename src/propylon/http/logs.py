"""`GET /v1/logs` and `GET /v1/stats`: the request log, read back."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.errors import AuthenticationFailed
from propylon.http.auth import authenticate, authenticate_admin
from propylon.http.context import services
from propylon.http.json import json_response
from propylon.observe.logs_query import LogFilter
from propylon.observe.stats import parse_window
from propylon.principal import Principal

router = APIRouter()


@router.get("/v1/logs", tags=["observability"])
async def get_logs(request: Request) -> Response:
    """Recorded requests, newest first: the caller's tenant (every tenant for an operator).
    Prompts and answers only for keys with the `logs:read` feature (`content_withheld`
    otherwise). Filters: `since`, `until`, `model`, `status`, `cache_status`, `request_id`,
    `metadata.<key>=<value>`, `tenant_id` (operator); paging with `before` and `limit`."""
    principal = await _reader(request)
    query = LogFilter.from_params(request.query_params.multi_items())
    return json_response(await services(request).observe.logs(principal, query))


@router.get("/v1/stats", tags=["observability"])
async def get_stats(request: Request) -> Response:
    """Aggregates over `window` (e.g. `15m`, `1h`, `7d`; default `1h`): requests per minute,
    latency and time-to-first-token percentiles, cache hit rates, error rate, tokens and cost
    by key, model and prompt version (`metadata.prompt_name` / `prompt_version`)."""
    principal = await _reader(request)
    window = parse_window(request.query_params.get("window"))
    tenant = request.query_params.get("tenant_id")
    return json_response(await services(request).observe.stats(principal, window, tenant))


async def _reader(request: Request) -> Principal:
    """An API key (its tenant's records; an operator key: every tenant's), or the admin key."""
    try:
        return await authenticate(request)
    except AuthenticationFailed:
        return await authenticate_admin(request)
