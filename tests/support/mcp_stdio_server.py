"""A stdio MCP server (the official SDK's) for tests: `python -m tests.support.mcp_stdio_server`."""

from __future__ import annotations

from mcp.server.mcpserver import MCPServer

server = MCPServer("notes")


@server.tool()
def word_count(text: str) -> str:
    """How many words a text has."""
    return f"{len(text.split())} words"


if __name__ == "__main__":
    server.run("stdio")
