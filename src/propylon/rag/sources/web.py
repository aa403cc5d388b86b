"""``url`` sources: one page, a site crawled from a start URL within a path prefix, or the
pages a sitemap lists.

Polite: robots.txt is read first and honoured (its Crawl-delay too), requests to the site are
spaced by ``rag.sources.requests_per_s``, a crawl stops at ``max_pages``. Safe: only http(s),
redirects followed by hand (at most 5) and every hop's host checked, hosts that resolve to
loopback or private addresses refused unless the operator allows them
(``rag.sources.url_hosts``), bodies read up to the upload limit. Thrifty: a page synced before
is asked for with a conditional GET (``If-None-Match`` with its stored ETag, else
``If-Modified-Since`` with its stored Last-Modified); a 304 is the page unchanged, skipped
without its body. A crawl (``site``) follows the links of a page that answered 304 as they
were when it last read the page (kept with the item; a page stored before they were kept is
read in full once).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, replace
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit
from urllib.robotparser import RobotFileParser

import aiohttp

from propylon.params import http_url
from propylon.private_addresses import (
    PrivateAddress,
    Unresolvable,
    check_literal,
    check_resolved,
)
from propylon.rag.errors import DocumentRejected
from propylon.rag.sources.connector import (
    InvalidSource,
    ItemRejected,
    KnownItem,
    SourceItem,
    SourceUnavailable,
)

MODES = ("page", "site", "sitemap")
_MAX_REDIRECTS = 5
_MAX_SITEMAPS = 50
_SITEMAP_NS = "{http://www.sitemaps.org/schemas/sitemap/0.9}"


@dataclass(frozen=True, slots=True)
class WebLimits:
    hosts: Collection[str]  # allowed even when private; "*": any
    max_pages: int
    requests_per_s: float
    timeout_s: float
    max_bytes: int
    user_agent: str


def web_config(config: dict[str, Any], limits: WebLimits) -> dict[str, Any]:
    """The stored configuration of a url source; ``InvalidSource`` when malformed, or when its
    host is an address that is not public (``127.0.0.1``, ``[::1]``, ``10.0.0.5``) and not
    allowed: no sync could ever read it (a name is resolved when a sync reads it)."""
    max_pages = limits.max_pages
    url = config.get("url")
    parts = http_url(url)
    if not isinstance(url, str) or parts is None:
        raise InvalidSource(
            "A `url` source needs `url`, an http(s) URL with a host (and a port from 1 to 65535).",
            param="url",
        )
    host = parts.hostname
    assert host is not None  # http_url: every URL it splits has one
    try:
        check_literal(host, limits.hosts)
    except PrivateAddress as exc:
        raise _refused(exc) from None
    mode = config.get("mode", "page")
    if mode not in MODES:
        raise InvalidSource(f"`mode` must be one of {', '.join(MODES)}.", param="mode")
    prefix = config.get("prefix", parts.path.rsplit("/", 1)[0] + "/")
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise InvalidSource("`prefix` must be a path starting with `/`.", param="prefix")
    pages = config.get("max_pages", max_pages)
    if not isinstance(pages, int) or isinstance(pages, bool) or not 1 <= pages <= max_pages:
        raise InvalidSource(f"`max_pages` must be 1 to {max_pages}.", param="max_pages")
    return {"url": urldefrag(url).url, "mode": mode, "prefix": prefix, "max_pages": pages}


class WebConnector:
    def __init__(self, config: dict[str, Any], limits: WebLimits) -> None:
        self._config = web_config(config, limits)
        self._limits = limits
        self._gap_s = 1.0 / limits.requests_per_s
        self._last_request = float("-inf")
        self._robots: RobotFileParser | None = None
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> WebConnector:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self._limits.timeout_s),
            headers={"User-Agent": self._limits.user_agent},
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()

    async def items(self, known: Mapping[str, KnownItem]) -> AsyncIterator[SourceItem]:
        start = self._config["url"]
        await self._read_robots(start)
        mode = self._config["mode"]
        if mode == "sitemap":  # the sitemap's lastmod says what changed
            async for item in self._sitemap(start):
                yield item
            return
        queue, queued = deque([start]), {start}
        pages = 0
        while queue and pages < self._config["max_pages"]:
            url = queue.popleft()
            if not self._allowed(url):
                continue
            last = known.get(url)
            # A crawl needs the links of a page: asked only if it changed when they were kept.
            version = last.version if last and (mode != "site" or last.links is not None) else None
            try:
                # A start page that is gone is an error, not an empty site to delete.
                got = await self._get(url, accept_missing=url != start, version=version)
            except ItemRejected as exc:
                pages += 1
                yield SourceItem(url, None, _filename(url), rejected=str(exc))
                continue
            if got is None:
                continue  # gone: not listed, so its document is deleted
            item, body = got
            if mode == "site":
                if body is None:  # unchanged (304): the links it had when last read
                    links = last.links if last is not None and last.links is not None else ()
                elif (item.media_type or "").endswith("html"):
                    links = tuple(
                        dict.fromkeys(u for u in _links(body, item.key) if self._in_scope(start, u))
                    )
                else:
                    links = ()
                item = replace(item, links=links)
                for link in links:
                    if link not in queued:
                        queued.add(link)
                        queue.append(link)
            pages += 1
            yield item

    async def fetch(self, item: SourceItem) -> bytes:
        got = await self._get(item.key)
        if got is None or got[1] is None:
            raise ItemRejected(f"`{item.key}` is gone.")
        return got[1]

    # Listing --------------------------------------------------------------------------------

    async def _sitemap(self, start: str) -> AsyncIterator[SourceItem]:
        pending, seen, listed = deque([start]), {start}, 0
        while pending and len(seen) <= _MAX_SITEMAPS:
            got = await self._get(pending.popleft(), accept_missing=False)
            assert got is not None and got[1] is not None
            try:
                # lxml is imported only when a source syncs, not with the app
                from propylon.rag.parsing.xml import parse_xml

                root = parse_xml(got[1], "The sitemap")
            except DocumentRejected as exc:
                raise SourceUnavailable(exc.message) from None
            for entry in root:
                loc = (entry.findtext(f"{_SITEMAP_NS}loc") or "").strip()
                if not loc:
                    continue
                if entry.tag == f"{_SITEMAP_NS}sitemap":
                    if loc not in seen:
                        seen.add(loc)
                        pending.append(loc)
                    continue
                if listed >= self._config["max_pages"] or not self._in_scope(start, loc):
                    continue
                if not self._allowed(loc):
                    continue
                listed += 1
                lastmod = (entry.findtext(f"{_SITEMAP_NS}lastmod") or "").strip() or None
                yield SourceItem(urldefrag(loc).url, lastmod, _filename(loc))

    def _in_scope(self, start: str, url: str) -> bool:
        a, b = urlsplit(start), urlsplit(url)
        if self._config["mode"] == "sitemap":
            return b.scheme in ("http", "https") and b.path.startswith(self._config["prefix"])
        return (a.scheme, a.netloc) == (b.scheme, b.netloc) and b.path.startswith(
            self._config["prefix"]
        )

    async def _read_robots(self, start: str) -> None:
        parts = urlsplit(start)
        robots = RobotFileParser()
        got = await self._get(f"{parts.scheme}://{parts.netloc}/robots.txt")
        text = b"" if got is None or got[1] is None else got[1]
        robots.parse(text.decode("utf-8", "replace").splitlines())
        delay = robots.crawl_delay(self._limits.user_agent)
        if delay is not None:
            self._gap_s = max(self._gap_s, float(delay))
        self._robots = robots

    def _allowed(self, url: str) -> bool:
        return self._robots is None or self._robots.can_fetch(self._limits.user_agent, url)

    # Fetching -------------------------------------------------------------------------------

    async def _get(
        self, url: str, *, accept_missing: bool = True, version: str | None = None
    ) -> tuple[SourceItem, bytes | None] | None:
        """The page at ``url`` (after redirects), or None when it is gone (404, 410). Given
        the ``version`` stored last time, the GET is conditional: unchanged (304), the item
        carries that version and the body is None."""
        assert self._session is not None, "use the connector inside `async with`"
        headers = conditional_headers(version)
        for _ in range(_MAX_REDIRECTS + 1):
            await check_host(url, self._limits.hosts)
            await self._pace()
            try:
                async with self._session.get(
                    url, allow_redirects=False, headers=headers
                ) as response:
                    if response.status == 304 and version is not None:
                        return SourceItem(urldefrag(url).url, version, _filename(url)), None
                    if response.status in (301, 302, 303, 307, 308):
                        url = urljoin(url, response.headers.get("Location", ""))
                        headers = {}  # the validator was the first URL's
                        continue
                    if response.status in (404, 410) and accept_missing:
                        return None
                    if response.status >= 400:
                        raise SourceUnavailable(f"GET {url} answered {response.status}.")
                    body = await read_capped(response, self._limits.max_bytes, url)
                    version = response.headers.get("ETag") or response.headers.get("Last-Modified")
                    item = SourceItem(
                        urldefrag(url).url, version, _filename(url), response.content_type, body
                    )
                    return item, body
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise SourceUnavailable(f"GET {url} failed: {exc or type(exc).__name__}.") from None
        raise SourceUnavailable(f"GET {url}: more than {_MAX_REDIRECTS} redirects.")

    async def _pace(self) -> None:
        wait = self._last_request + self._gap_s - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)  # politeness toward the site, not a test's timing
        self._last_request = time.monotonic()


def conditional_headers(version: str | None) -> dict[str, str]:
    """The headers that ask for a page only if it changed since ``version`` (what ``_get``
    stored: the ETag when the server sent one, else the Last-Modified date). An ETag is
    quoted (``"…"``, ``W/"…"``); a server that sent both is asked by ETag alone, as RFC 9110
    has it ignore ``If-Modified-Since`` next to ``If-None-Match``."""
    if not version:
        return {}
    if version.startswith(('"', 'W/"')):
        return {"If-None-Match": version}
    return {"If-Modified-Since": version}


async def check_host(url: str, allowed: Collection[str]) -> None:
    """Refuse a URL that is not http(s), or whose host resolves to a non-public address unless
    the operator allowed that host."""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme not in ("http", "https") or not host:
        raise InvalidSource(f"`{url}` is not an http(s) URL.", param="url")
    try:
        await check_resolved(host, parts.port or 443, allowed)
    except Unresolvable as exc:
        raise SourceUnavailable(f"{exc}.") from None
    except PrivateAddress as exc:
        raise _refused(exc) from None


def _refused(exc: PrivateAddress) -> InvalidSource:
    return InvalidSource(f"{exc}; an operator may allow it (`rag.sources.url_hosts`).", param="url")


async def read_capped(response: aiohttp.ClientResponse, limit: int, name: str) -> bytes:
    """The response's body; ``ItemRejected`` as soon as it passes ``limit`` bytes."""
    body = bytearray()
    async for block in response.content.iter_chunked(1 << 16):
        body += block
        if len(body) > limit:
            raise ItemRejected(f"`{name}` is larger than {limit:,} bytes.")
    return bytes(body)


def _filename(url: str) -> str:
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    return name or "index.html"


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.hrefs.extend(value for name, value in attrs if name == "href" and value)


def _links(body: bytes, base: str) -> list[str]:
    parser = _Links()
    parser.feed(body.decode("utf-8", "replace"))
    return [urldefrag(urljoin(base, href)).url for href in parser.hrefs]
