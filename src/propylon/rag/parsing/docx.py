"""Word documents (.docx) with python-docx: paragraphs and tables (as Markdown tables) in body
order. The archive is checked for its inflated size first (``archive.checked_archive``)."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Iterator

import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from docx.text.paragraph import Paragraph

from propylon.rag.errors import CorruptDocument
from propylon.rag.parsing.archive import checked_archive
from propylon.rag.parsing.document import Block, PageBreak, ParseLimits
from propylon.rag.parsing.table import markdown_table

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.I)


def parse_docx(data: bytes, limits: ParseLimits) -> Iterator[Block | PageBreak]:
    checked_archive(data, limits, "The Word document").close()
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile, SyntaxError) as exc:
        # lxml's XMLSyntaxError, raised for a broken part, is a SyntaxError.
        raise CorruptDocument(f"The Word document is damaged and cannot be read: {exc}.") from None
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            yield _paragraph(item)
        elif isinstance(item, Table):
            rows = [_unique_cells([cell.text.strip() for cell in row.cells]) for row in item.rows]
            yield Block("table", markdown_table(rows))


def _paragraph(paragraph: Paragraph) -> Block:
    style = (paragraph.style.name if paragraph.style is not None else "") or ""
    match = _HEADING_STYLE.match(style)
    if match:
        return Block("heading", paragraph.text, int(match[1]))
    if style.lower() == "title":
        return Block("heading", paragraph.text, 1)
    return Block("paragraph", paragraph.text)


def _unique_cells(cells: list[str]) -> list[str]:
    """Merged cells repeat their text in every grid cell they span; keep it once."""
    out: list[str] = []
    for cell in cells:
        if not out or cell != out[-1]:
            out.append(cell)
    return out
