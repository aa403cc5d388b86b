"""MCP servers as tool sources for agent runs, through the official `mcp` SDK.

A tenant registers a server by name: a streamable HTTP endpoint, or a stdio command whose
executable the operator allowed (`agents.mcp_stdio_commands`). An endpoint whose host is, or
resolves to, a loopback or private address is refused unless the operator allowed that host
(`agents.mcp_url_hosts`): checked when it is registered (an address) and before every session
(a name, resolved then). An agent spec names it as
``"mcp:<server>"``; on the worker, the server's tools are listed and offered to the model as
``<server>__<tool>`` with the server's own JSON Schemas. Every MCP tool reaches beyond
Propylon, so each has the ``network`` risk level; each call opens its own session (nothing
is shared between runs or tenants).
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from psycopg.types.json import Jsonb

from propylon.db.database import Database
from propylon.db.named_queries import named_queries
from propylon.errors import (
    Conflict,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
)
from propylon.params import http_url
from propylon.principal import Principal
from propylon.private_addresses import (
    PrivateAddress,
    Unresolvable,
    check_literal,
    check_resolved,
)
from propylon.runs.tools import Tool, ToolContext, ToolFailed, ToolResult

if TYPE_CHECKING:
    # The SDK is imported when a server is first called: imported with this module it cost
    # every process 1-1.7 s of start-up and ~45 MB of RSS, for the agent runs that use MCP.
    from mcp import StdioServerParameters

PREFIX = "mcp:"
SEPARATOR = "__"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")
CALL_TIMEOUT_S = 60.0


def _q(name: str) -> Any:
    return named_queries("propylon.runs")[name]


@dataclass(frozen=True, slots=True)
class McpServer:
    name: str
    url: str | None
    command: tuple[str, ...] | None

    def target(self) -> str | StdioServerParameters:
        from mcp import StdioServerParameters

        if self.url is not None:
            return self.url
        assert self.command is not None
        return StdioServerParameters(command=self.command[0], args=list(self.command[1:]))

    def view(self) -> dict[str, Any]:
        return {
            "object": "mcp_server",
            "name": self.name,
            "transport": "streamable_http" if self.url else "stdio",
            "url": self.url,
            "command": list(self.command) if self.command else None,
        }


def _server(row: dict[str, Any]) -> McpServer:
    command = row["command"]
    return McpServer(row["name"], row["url"], tuple(command) if command else None)


class McpServers:
    """The tenant's registered MCP servers, and their tools for one run."""

    def __init__(
        self,
        database: Database,
        stdio_commands: Collection[str] = (),
        url_hosts: Collection[str] = (),
    ) -> None:
        self._database = database
        self._stdio_commands = frozenset(stdio_commands)
        self._url_hosts = frozenset(url_hosts)

    async def register(self, principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
        """Register ``{"name", "url"}`` or ``{"name", "command": [...]}`` (tenant admins)."""
        if not principal.administers(principal.tenant_id):
            raise PermissionDenied("Registering an MCP server needs the `admin` feature.")
        name, url, command = body.get("name"), body.get("url"), body.get("command")
        if not isinstance(name, str) or not _NAME.match(name):
            raise InvalidRequest(
                "`name` must be 1-32 lowercase letters, digits or `-`.", param="name"
            )
        if (url is None) == (command is None):
            raise InvalidRequest("Give either `url` or `command`.", param="url")
        if url is not None:
            parts = http_url(url)
            if parts is None:
                raise InvalidRequest(
                    "`url` must be an http(s) URL with a host (and a port from 1 to 65535).",
                    param="url",
                )
            assert parts.hostname is not None  # http_url: every URL it splits has one
            try:
                check_literal(parts.hostname, self._url_hosts)
            except PrivateAddress as exc:
                raise _refused(exc) from None
        if command is not None:
            if (
                not isinstance(command, list)
                or not command
                or not all(isinstance(part, str) for part in command)
            ):
                raise InvalidRequest("`command` must be an array of strings.", param="command")
            if command[0] not in self._stdio_commands:
                raise PermissionDenied(
                    f"The operator has not allowed `{command[0]}` as an MCP stdio command "
                    "(`agents.mcp_stdio_commands`).",
                    param="command",
                )
        async with self._database.connection() as conn:
            cur = await conn.execute(
                _q("insert_mcp_server"),
                {
                    "tenant_id": principal.tenant_id,
                    "name": name,
                    "url": url,
                    "command": Jsonb(command) if command is not None else None,
                },
            )
            row = await cur.fetchone()
        if row is None:
            raise Conflict(
                f"An MCP server named `{name}` exists.", param="name", code="mcp_server_exists"
            )
        return _server(row).view()

    async def registered(self, tenant_id: str) -> list[dict[str, Any]]:
        async with self._database.connection() as conn:
            cur = await conn.execute(_q("list_mcp_servers"), {"tenant_id": tenant_id})
            return [_server(row).view() for row in await cur.fetchall()]

    async def get(self, tenant_id: str, name: str) -> McpServer:
        async with self._database.connection() as conn:
            cur = await conn.execute(_q("get_mcp_server"), {"tenant_id": tenant_id, "name": name})
            row = await cur.fetchone()
        if row is None:
            raise NotFound(f"No MCP server `{name}`.", param="name", code="mcp_server_not_found")
        return _server(row)

    async def delete(self, principal: Principal, name: str) -> dict[str, Any]:
        if not principal.administers(principal.tenant_id):
            raise PermissionDenied("Removing an MCP server needs the `admin` feature.")
        async with self._database.connection() as conn:
            cur = await conn.execute(
                _q("delete_mcp_server"), {"tenant_id": principal.tenant_id, "name": name}
            )
            if await cur.fetchone() is None:
                raise NotFound(f"No MCP server `{name}`.", param="name")
        return {"object": "mcp_server", "name": name, "deleted": True}

    async def tools(self, tenant_id: str, name: str) -> list[Tool]:
        """The server's tools, as an agent is offered them; 503 when it cannot be reached."""
        from mcp import Client

        server = await self.get(tenant_id, name)
        await self.check_address(server)
        try:
            async with Client(server.target(), read_timeout_seconds=CALL_TIMEOUT_S) as client:
                listed = await client.list_tools()
        except Exception as exc:  # the SDK's transport errors are many: one clear refusal
            raise ServiceUnavailable(
                f"The MCP server `{name}` could not be reached to list its tools: {cause(exc)}"
            ) from exc
        return [
            Tool(
                f"{name}{SEPARATOR}{tool.name}",
                tool.description or f"`{tool.name}` of the MCP server `{name}`.",
                dict(tool.input_schema),
                "network",
                self._caller(server, tool.name),
            )
            for tool in listed.tools
        ]

    async def check_address(self, server: McpServer) -> None:
        """Refuse to connect to a server whose host resolves, now, to a non-public address
        the operator did not allow (403), or does not resolve (503)."""
        if server.url is None:
            return  # a stdio command: the operator allowed its executable
        parts = urlsplit(server.url)
        assert parts.hostname is not None  # registered through http_url
        try:
            await check_resolved(
                parts.hostname,
                parts.port or (443 if parts.scheme == "https" else 80),
                self._url_hosts,
            )
        except PrivateAddress as exc:
            raise _refused(exc, server.name) from None
        except Unresolvable as exc:
            raise ServiceUnavailable(
                f"The MCP server `{server.name}` could not be reached: {exc}."
            ) from None

    def _caller(self, server: McpServer, tool: str) -> Any:
        async def call(ctx: ToolContext, arguments: dict[str, Any]) -> ToolResult:
            return await self._call(server, tool, arguments)

        return call

    async def _call(self, server: McpServer, tool: str, arguments: dict[str, Any]) -> ToolResult:
        from mcp import Client

        try:
            await self.check_address(server)
        except (PermissionDenied, ServiceUnavailable) as exc:
            raise ToolFailed(exc.message) from None
        try:
            async with Client(server.target(), read_timeout_seconds=CALL_TIMEOUT_S) as client:
                result = await client.call_tool(tool, arguments)
        except Exception as exc:
            raise ToolFailed(f"the MCP server `{server.name}` failed: {cause(exc)}") from exc
        text = "\n".join(
            str(getattr(block, "text", "")) for block in result.content if hasattr(block, "text")
        )
        if result.is_error:
            raise ToolFailed(text or f"`{tool}` reported an error")
        data = {"server": server.name, "tool": tool}
        if result.structured_content is not None:
            data["structured"] = result.structured_content
        return ToolResult(text, data)


def _refused(exc: PrivateAddress, name: str | None = None) -> PermissionDenied:
    where = f"The MCP server `{name}` is at {exc}" if name else f"{exc}"
    return PermissionDenied(
        f"{where}; an operator may allow the host (`agents.mcp_url_hosts`).", param="url"
    )


def cause(exc: BaseException) -> str:
    """What went wrong, for a person: the SDK runs its transport in task groups, whose error
    says only "unhandled errors in a TaskGroup (1 sub-exception)"; the first error inside it
    (a refused connection, a timeout) is named instead, with its type when it has no text."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
