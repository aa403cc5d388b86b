"""Small sites on loopback counting what was fetched (for agents' tools and url sources)."""

from __future__ import annotations

import hashlib
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
    async with _serving(app) as site.url:
        yield site


@dataclass
class StaticSite:
    """Pages a test serves and edits: ``pages[path] = body`` (absent: 404). Each answer carries
    an ETag of its body, as static file servers send (or, ``validator="date"``, only a
    Last-Modified date, from ``modified[path]``), and a conditional GET that names the current
    one answers 304 without a body. ``bodies`` counts the answers that sent a body."""

    url: str = ""
    pages: dict[str, bytes] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)
    types: dict[str, str] = field(default_factory=dict)  # path -> content type (default html)
    failing: set[str] = field(default_factory=set)  # paths answering 500
    bodies: Counter[str] = field(default_factory=Counter)  # 200 answers, by path
    validator: str = "etag"  # or "date": Last-Modified only
    modified: dict[str, str] = field(default_factory=dict)  # path -> Last-Modified (date)


@asynccontextmanager
async def static_site(pages: dict[str, bytes] | None = None) -> AsyncIterator[StaticSite]:
    """Serve ``site.pages`` on loopback (``GET /{path}``), counting each path's hits."""
    site = StaticSite(pages=dict(pages or {}))

    async def serve(request: web.Request) -> web.StreamResponse:
        site.hits[request.path] += 1
        body = site.pages.get(request.path)
        if request.path in site.failing:
            raise web.HTTPInternalServerError()
        if body is None:
            raise web.HTTPNotFound()
        if site.validator == "date":
            date = site.modified.get(request.path, "Sun, 06 Dec 2026 06:00:00 GMT")
            headers = {"Last-Modified": date}
            unchanged = request.headers.get("If-Modified-Since") == date
        else:
            etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
            headers = {"ETag": etag}
            unchanged = request.headers.get("If-None-Match") == etag
        if unchanged:
            return web.Response(status=304, headers=headers)
        site.bodies[request.path] += 1
        content_type = site.types.get(request.path, "text/html")
        return web.Response(body=body, content_type=content_type, headers=headers)

    app = web.Application()
    app.router.add_get("/{path:.*}", serve)
    async with _serving(app) as site.url:
        yield site


@asynccontextmanager
async def _serving(app: web.Application) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port; its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    tcp = web.TCPSite(runner, "127.0.0.1", 0)
    await tcp.start()
    port = tcp._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
