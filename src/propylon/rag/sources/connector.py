"""The seam between a sync and where a source's documents live.

A ``Connector`` lists the items of one source (web pages, files, objects) and fetches their
bytes. Contract:

- ``items()`` yields every item the source holds now, each once, by a ``key`` stable across
  syncs (URL, path under the folder, object key). A sync deletes the documents of keys that were
  not yielded, so ``items()`` must raise (``SourceUnavailable``) rather than end early when it
  cannot list everything it should (the server is down, a listing page fails); an item that
  is gone (404) is simply not yielded.
- ``version`` is a cheap fingerprint from the listing (ETag, Last-Modified, mtime and size):
  an item whose version equals the one stored last time is skipped without being fetched.
  ``None`` means "no such fingerprint": the bytes are fetched and compared by sha256.
  ``items(known)`` is handed what was stored last time, by key (``KnownItem``): a connector
  whose listing reads the bytes (a crawled page) asks the server for them only if they changed
  (a conditional GET) and, when they did not, yields the item with its stored version and no
  ``content``, which the sync then skips. ``links`` (a crawled page's, in scope) are stored
  with the item and handed back, so a crawl goes on past a page that did not change.
- ``content`` is set when listing had to fetch the bytes anyway (a crawled page); otherwise
  ``fetch(item)`` reads them. Either way at most ``max_bytes`` are read: larger items raise
  ``ItemRejected`` (or, while listing, an item with ``rejected`` set), which the sync counts
  as ``rejected`` and goes on, keeping what the collection holds of it.
- A connector is used inside ``async with`` (a web connector holds its HTTP session there).
- Connectors translate their transport's errors once, into ``SourceUnavailable`` (retried by
  the job queue) or ``ItemRejected``; nothing above them sees aiohttp or OSError.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from propylon.errors import InvalidRequest, ServiceUnavailable


class SourceUnavailable(ServiceUnavailable):
    """The source could not be listed or read completely; the sync is retried."""

    default_code = "source_unavailable"


class InvalidSource(InvalidRequest):
    """A source's configuration is refused (unknown type, a folder outside the allowed roots,
    a host not allowed)."""

    default_code = "invalid_source"


class ItemRejected(Exception):
    """This one item cannot be ingested (too large, unreadable); the sync goes on."""


@dataclass(frozen=True, slots=True)
class SourceItem:
    key: str
    version: str | None
    filename: str | None = None
    media_type: str | None = None
    content: bytes | None = None
    rejected: str | None = None  # listed, but cannot be ingested (why): counted, kept as is
    links: tuple[str, ...] | None = None  # a crawled page's links to follow; None: not crawled


@dataclass(frozen=True, slots=True)
class KnownItem:
    """What a sync stored of an item: its version, and a crawled page's links."""

    version: str | None
    links: tuple[str, ...] | None = None


class Connector(Protocol):
    """Lists and reads the items of one source (see the module docstring)."""

    async def __aenter__(self) -> Connector: ...

    async def __aexit__(self, *exc: object) -> None: ...

    def items(self, known: Mapping[str, KnownItem]) -> AsyncIterator[SourceItem]: ...

    async def fetch(self, item: SourceItem) -> bytes: ...
