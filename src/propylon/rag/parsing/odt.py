"""OpenDocument text (.odt): a ZIP whose ``content.xml`` holds headings, paragraphs, lists and
tables in body order, read with lxml (no entities, no network) after the archive passed the
inflated-size check. Tables become Markdown tables."""

from __future__ import annotations

from collections.abc import Iterator

from lxml import etree

from propylon.rag.parsing.archive import checked_archive, read_member
from propylon.rag.parsing.document import Block, PageBreak, ParseLimits
from propylon.rag.parsing.table import markdown_table
from propylon.rag.parsing.xml import parse_xml

_WHAT = "The OpenDocument file"
_TEXT = "urn:oasis:names:tc:opendocument:xmlns:text:1.0"
_TABLE = "urn:oasis:names:tc:opendocument:xmlns:table:1.0"
_OFFICE = "urn:oasis:names:tc:opendocument:xmlns:office:1.0"


def parse_odt(data: bytes, limits: ParseLimits) -> Iterator[Block | PageBreak]:
    with checked_archive(data, limits, _WHAT) as archive:
        content = parse_xml(read_member(archive, "content.xml", _WHAT), _WHAT)
    body = content.find(f"{{{_OFFICE}}}body/{{{_OFFICE}}}text")
    if body is None:
        return
    yield from _blocks(body)


def _blocks(parent: etree._Element) -> Iterator[Block]:
    for element in parent:
        tag = element.tag
        if tag == f"{{{_TEXT}}}h":
            level = int(element.get(f"{{{_TEXT}}}outline-level") or 1)
            yield Block("heading", _text(element), min(level, 6))
        elif tag == f"{{{_TEXT}}}p":
            yield Block("paragraph", _text(element))
        elif tag == f"{{{_TABLE}}}table":
            rows = [
                [_text(cell) for cell in row.iter(f"{{{_TABLE}}}table-cell")]
                for row in element.iter(f"{{{_TABLE}}}table-row")
            ]
            yield Block("table", markdown_table(rows))
        elif isinstance(tag, str):  # lists, sections, frames: their paragraphs in order
            yield from _blocks(element)


def _text(element: etree._Element) -> str:
    """An element's text with ODF's spacing elements (``s``, ``tab``, ``line-break``) kept."""
    parts: list[str] = [element.text or ""]
    for child in element:
        if child.tag == f"{{{_TEXT}}}s":
            parts.append(" " * int(child.get(f"{{{_TEXT}}}c") or 1))
        elif child.tag == f"{{{_TEXT}}}tab":
            parts.append("\t")
        elif child.tag == f"{{{_TEXT}}}line-break":
            parts.append("\n")
        elif isinstance(child.tag, str):
            parts.append(_text(child))
        parts.append(child.tail or "")
    return "".join(parts)
