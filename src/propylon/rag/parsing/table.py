"""Tables written as Markdown tables, one row a line, so a chunk can hold whole rows.

Every format's tables (PDF, DOCX, HTML, PPTX, ODT, sheets) go through ``markdown_table``; the
chunker cuts a table too big for one chunk between rows, never inside one
(``propylon.rag.chunking``). Sheets too long for one block become row ranges, each a table of
its own with the header row repeated (``row_ranges``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from propylon.rag.parsing.document import Block, PageBreak

ROWS_CHARS = 1200  # a row range's size in characters: a few hundred tokens


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return " ".join(text.replace("|", "\\|").split())


def markdown_table(rows: Sequence[Sequence[object]]) -> str:
    """``rows`` (the first is the header) as a Markdown table; ragged rows are padded, empty
    rows dropped."""
    cells = [[_cell(value) for value in row] for row in rows]
    cells = [row for row in cells if any(row)]
    if not cells:
        return ""
    width = max(len(row) for row in cells)
    lines = [_line(row, width) for row in cells]
    lines.insert(1, "| " + " | ".join(["---"] * width) + " |")
    return "\n".join(lines)


def _line(row: list[str], width: int) -> str:
    return "| " + " | ".join(row + [""] * (width - len(row))) + " |"


@dataclass(frozen=True, slots=True)
class RowRange:
    """Rows ``first``..``last`` (1-based, as the sheet numbers them) as one Markdown table."""

    first: int
    last: int
    text: str


def row_ranges(
    rows: Sequence[tuple[int, Sequence[object]]], *, max_chars: int = ROWS_CHARS
) -> Iterator[RowRange]:
    """A sheet's ``(row number, values)`` cut into ranges of about ``max_chars``, each a table
    headed by the sheet's first row, so every range reads on its own."""
    if not rows:
        return
    _, header = rows[0]
    body = rows[1:]
    if not body:
        yield RowRange(rows[0][0], rows[0][0], markdown_table([header]))
        return
    batch: list[tuple[int, Sequence[object]]] = []
    size = 0
    first = rows[0][0]  # the first range's rows include the header's
    for number, values in body:
        line = sum(len(_cell(v)) + 3 for v in values)
        if batch and size + line > max_chars:
            yield RowRange(first, batch[-1][0], markdown_table([header, *_values(batch)]))
            batch, size, first = [], 0, number
        batch.append((number, values))
        size += line
    yield RowRange(first, batch[-1][0], markdown_table([header, *_values(batch)]))


def _values(batch: list[tuple[int, Sequence[object]]]) -> list[Sequence[object]]:
    return [values for _, values in batch]


def sheet_pages(
    rows: Sequence[tuple[int, Sequence[object]]], *, sheet: str | None, first_page: int
) -> Iterator[Block | PageBreak]:
    """A sheet's rows as row ranges, each a page of its own named by its rows, so a citation
    says "sheet Sales, rows 2-41"; pages are numbered on from ``first_page``. A named sheet
    starts with its name as a heading, so no chunk holds rows of two sheets."""
    where = f"sheet {sheet}, rows" if sheet else "rows"
    for page, rows_range in enumerate(row_ranges(rows), start=first_page):
        label = f"{where} {rows_range.first}-{rows_range.last}"
        yield PageBreak(page, label=label)
        if sheet and page == first_page:
            yield Block("heading", f"Sheet {sheet}", 1)
        yield Block("table", rows_range.text)
