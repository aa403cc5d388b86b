"""MCP servers a tenant registers as tool sources for its agent runs."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from propylon.http.auth import authenticate
from propylon.http.context import services
from propylon.http.json import json_response, read_json_object
from propylon.http.openapi import JSON_OBJECT_BODY

router = APIRouter(tags=["agents"])


@router.post("/v1/mcp-servers", openapi_extra=JSON_OBJECT_BODY)
async def register_mcp_server(request: Request) -> Response:
    """Register `{"name", "url"}` (streamable HTTP) or `{"name", "command"}` (stdio, where
    the operator allows the executable); tenant admins only. Agents name it `mcp:<name>`."""
    principal = await authenticate(request)
    svc = services(request)
    body = await read_json_object(request, svc.settings.max_body_bytes)
    return json_response(await svc.mcp_servers.register(principal, body), status=201)


@router.get("/v1/mcp-servers")
async def list_mcp_servers(request: Request) -> Response:
    principal = await authenticate(request)
    servers = await services(request).mcp_servers.registered(principal.tenant_id)
    return json_response({"object": "list", "data": servers})


@router.delete("/v1/mcp-servers/{name}")
async def delete_mcp_server(name: str, request: Request) -> Response:
    principal = await authenticate(request)
    return json_response(await services(request).mcp_servers.delete(principal, name))
