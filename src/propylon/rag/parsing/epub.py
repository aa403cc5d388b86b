"""E-books (.epub): a ZIP of XHTML chapters, read in the order of the book's spine, each
chapter a page of its own ("chapter 3: The Harbour") parsed by the HTML parser. The archive
is checked for its inflated size first; its XML is read without entities or network."""

from __future__ import annotations

import posixpath
from collections.abc import Iterator
from urllib.parse import unquote

from propylon.rag.errors import CorruptDocument, DocumentLimitExceeded
from propylon.rag.parsing.archive import checked_archive, read_member
from propylon.rag.parsing.document import Block, PageBreak, ParseLimits
from propylon.rag.parsing.html import parse_html
from propylon.rag.parsing.xml import parse_xml

_WHAT = "The e-book"
_CONTAINER_NS = {"c": "urn:oasis:names:tc:opendocument:xmlns:container"}
_OPF_NS = {"opf": "http://www.idpf.org/2007/opf"}
_XHTML = ("application/xhtml+xml", "text/html")
_LABEL_TITLE_CHARS = 60


def parse_epub(data: bytes, limits: ParseLimits) -> Iterator[Block | PageBreak]:
    with checked_archive(data, limits, _WHAT) as archive:
        container = parse_xml(read_member(archive, "META-INF/container.xml", _WHAT), _WHAT)
        rootfile = container.find(".//c:rootfile", _CONTAINER_NS)
        opf_path = rootfile.get("full-path") if rootfile is not None else None
        if not opf_path:
            raise CorruptDocument(f"{_WHAT} is damaged: its container names no package.")
        package = parse_xml(read_member(archive, opf_path, _WHAT), _WHAT)
        base = posixpath.dirname(opf_path)
        manifest = {
            item.get("id"): item for item in package.iterfind(".//opf:manifest/opf:item", _OPF_NS)
        }
        chapters: list[str] = []
        for ref in package.iterfind(".//opf:spine/opf:itemref", _OPF_NS):
            item = manifest.get(ref.get("idref"))
            if item is None or item.get("media-type") not in _XHTML:
                continue
            href = unquote(item.get("href") or "")
            chapters.append(posixpath.normpath(posixpath.join(base, href)))
        if len(chapters) > limits.max_pages:
            raise DocumentLimitExceeded(
                f"{_WHAT} has {len(chapters):,} chapters; the limit is {limits.max_pages:,}."
            )
        for number, path in enumerate(chapters, start=1):
            blocks = [
                b
                for b in parse_html(read_member(archive, path, _WHAT), limits)
                if isinstance(b, Block)
            ]
            yield PageBreak(number, len(chapters), label=_label(number, blocks))
            yield from blocks


def _label(number: int, blocks: list[Block]) -> str:
    title = next((" ".join(b.text.split()) for b in blocks if b.kind == "heading"), "")
    if len(title) > _LABEL_TITLE_CHARS:
        title = title[: _LABEL_TITLE_CHARS - 1] + "…"
    return f"chapter {number}: {title}" if title else f"chapter {number}"
