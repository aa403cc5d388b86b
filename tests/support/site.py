"""A small web site on loopback that counts what was fetched from it (for agents' tools)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web


@dataclass
class Site:
    url: str = ""
    hits: Counter[str] = field(default_factory=Counter)

    @property
    def host(self) -> str:
        return self.url.removeprefix("http://")


@asynccontextmanager
async def counting_site(page: Callable[[Site, str], str]) -> AsyncIterator[Site]:
    """Serve ``GET /<name>`` with ``page(site, path)`` as text, counting each path's hits."""
    site = Site()

    async def serve(request: web.Request) -> web.Response:
        site.hits[request.path] += 1
        return web.Response(text=page(site, request.path))

    app = web.Application()
    app.router.add_get("/{name}", serve)
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    site.url = f"http://127.0.0.1:{port}"
    try:
        yield site
    finally:
        await runner.cleanup()
