"""Word documents (.docx) with python-docx: paragraphs and tables in body order.

A .docx is a ZIP archive: before python-docx reads it, every member is inflated once, counting
the bytes that really come out against ``max_decompressed_bytes`` (a "zip bomb" may lie about
its sizes in its headers), in chunks, so the check itself holds one chunk in memory.
"""

from __future__ import annotations

import io
import re
import zipfile
import zlib
from collections.abc import Iterator

import docx
from docx.opc.exceptions import PackageNotFoundError
from docx.table import Table
from docx.text.paragraph import Paragraph

from propylon.rag.errors import CorruptDocument, DocumentLimitExceeded
from propylon.rag.parsing.document import Block, PageBreak, ParseLimits

_HEADING_STYLE = re.compile(r"^heading\s*(\d)$", re.I)


def parse_docx(data: bytes, limits: ParseLimits) -> Iterator[Block | PageBreak]:
    _check_archive(data, limits)
    try:
        document = docx.Document(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile, SyntaxError) as exc:
        # lxml's XMLSyntaxError, raised for a broken part, is a SyntaxError.
        raise CorruptDocument(f"The Word document is damaged and cannot be read: {exc}.") from None
    for item in document.iter_inner_content():
        if isinstance(item, Paragraph):
            yield _paragraph(item)
        elif isinstance(item, Table):
            rows = [
                " | ".join(_unique_cells([cell.text.strip() for cell in row.cells]))
                for row in item.rows
            ]
            yield Block("table", "\n".join(row for row in rows if row.strip(" |")))


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


_CHUNK = 1024 * 1024


def _check_archive(data: bytes, limits: ParseLimits) -> None:
    budget = limits.max_decompressed_bytes
    total = 0
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    while chunk := member.read(_CHUNK):
                        total += len(chunk)
                        if total > budget:
                            raise DocumentLimitExceeded(
                                f"The Word document expands to more than {budget:,} bytes "
                                "(the limit)."
                            )
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise CorruptDocument(f"The Word document is damaged: {exc}.") from None
