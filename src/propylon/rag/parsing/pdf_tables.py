"""Tables on PDF pages, found by pdfplumber's table finder (ruling lines) and written as
Markdown tables in their place on the page.

pdfplumber parses a page with pdfminer, several times slower than PDFium, so it runs only on
pages that draw enough lines to hold a ruled table (counted with PDFium first: a cheap walk of
the page's path objects). On such a page the text is read in horizontal bands: the text above
each table, the table itself, and the text beside it, then the text below the last one; the
rest of the document is read as before.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from propylon.rag.parsing.table import markdown_table

MIN_RULES = 4  # path objects a page needs before it is searched for tables
TABLE_MARK = "\x07"  # starts and ends a table's text in a page's text (not whitespace)


@dataclass(frozen=True, slots=True)
class PageTable:
    """A table's box in PDF points from the page's top-left corner, and its cells."""

    x0: float
    top: float
    x1: float
    bottom: float
    rows: list[list[str | None]]


def has_rules(page: pdfium.PdfPage) -> bool:
    """Whether ``page`` draws at least ``MIN_RULES`` paths (lines, rectangles)."""
    paths = page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_PATH,), max_depth=2)
    return any(seen >= MIN_RULES for seen, _ in enumerate(paths, start=1))


class TableFinder:
    """pdfplumber over the same bytes, opened on the first page that needs it."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pdf: Any = None

    def tables(self, index: int) -> list[PageTable]:
        import pdfplumber

        if self._pdf is None:
            self._pdf = pdfplumber.open(io.BytesIO(self._data))
        page = self._pdf.pages[index]
        try:
            found = page.find_tables()
            tables = [
                PageTable(x0, top, x1, bottom, table.extract())
                for table in found
                if len(table.rows) >= 2
                for x0, top, x1, bottom in [table.bbox]
            ]
        finally:
            page.close()
        return sorted(tables, key=lambda t: t.top)

    def close(self) -> None:
        if self._pdf is not None:
            self._pdf.close()


def page_text_with_tables(
    textpage: pdfium.PdfTextPage, width: float, height: float, tables: Sequence[PageTable]
) -> str:
    """The page's text with each table's region replaced by its Markdown table."""

    def band(x0: float, top: float, x1: float, bottom: float) -> str:
        if bottom - top < 1 or x1 - x0 < 1:
            return ""
        text: str = textpage.get_text_bounded(x0, height - bottom, x1, height - top)
        return text

    parts: list[str] = []
    above = 0.0
    for table in tables:
        parts.append(band(0, above, width, table.top))
        parts.append(f"{TABLE_MARK}{markdown_table(table.rows)}{TABLE_MARK}")
        parts.append(band(0, table.top, table.x0, table.bottom))
        parts.append(band(table.x1, table.top, width, table.bottom))
        above = max(above, table.bottom)
    parts.append(band(0, above, width, height))
    return "\n\n".join(part for part in parts if part.strip())
