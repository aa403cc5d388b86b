"""Spreadsheets: Excel workbooks (.xlsx, openpyxl) and CSV (stdlib ``csv``).

Each sheet is a heading and its rows as row ranges, each range a Markdown table headed by the
sheet's first row and a page of its own named by its rows ("sheet Sales, rows 2-41"), so a
chunk holds whole rows and its citation says where they are. Cells are read as their cached
values, never as formulas; the workbook is read row by row (openpyxl's read-only mode) after
its archive passed the inflated-size check.
"""

from __future__ import annotations

import csv
import io
import zipfile
from collections.abc import Iterator, Sequence

from propylon.rag.errors import CorruptDocument
from propylon.rag.parsing.archive import checked_archive
from propylon.rag.parsing.document import Block, PageBreak, ParseLimits
from propylon.rag.parsing.sniff import csv_dialect, decode_text
from propylon.rag.parsing.table import sheet_pages

_WHAT = "The workbook"


def parse_xlsx(data: bytes, limits: ParseLimits) -> Iterator[Block | PageBreak]:
    import openpyxl

    checked_archive(data, limits, _WHAT).close()
    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (KeyError, ValueError, zipfile.BadZipFile, SyntaxError, TypeError) as exc:
        raise CorruptDocument(f"{_WHAT} is damaged and cannot be read: {exc}.") from None
    page = 1
    try:
        for sheet in workbook.worksheets:
            rows = [
                (number, values)
                for number, values in enumerate(sheet.iter_rows(values_only=True), start=1)
                if any(v is not None and str(v).strip() for v in values)
            ]
            if not rows:
                continue
            for item in sheet_pages(_trimmed(rows), sheet=sheet.title, first_page=page):
                if isinstance(item, PageBreak):
                    page = item.number + 1
                yield item
    finally:
        workbook.close()


def parse_csv(data: bytes, limits: ParseLimits) -> Iterator[Block | PageBreak]:
    text = decode_text(data)
    dialect = csv_dialect(text[:4096], min_fields=1) or csv.excel
    try:
        rows = [
            (number, values)
            for number, values in enumerate(csv.reader(io.StringIO(text), dialect), start=1)
            if any(v.strip() for v in values)
        ]
    except csv.Error as exc:
        raise CorruptDocument(f"The CSV file is damaged: {exc}.") from None
    yield from sheet_pages(rows, sheet=None, first_page=1)


def _trimmed(
    rows: list[tuple[int, Sequence[object]]],
) -> list[tuple[int, Sequence[object]]]:
    """Rows without the empty columns a sheet's formatting leaves on their right."""
    width = max(
        (max((i + 1 for i, v in enumerate(values) if v is not None), default=0))
        for _, values in rows
    )
    return [(number, list(values)[:width]) for number, values in rows]
