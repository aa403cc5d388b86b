"""PowerPoint presentations (.pptx) with python-pptx: one page per slide ("slide 3"), its
title as a heading, its text boxes top to bottom, its tables as Markdown tables, then its
speaker notes. The archive is checked for its inflated size first."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator

import pptx
from pptx.exc import PackageNotFoundError
from pptx.shapes.base import BaseShape
from pptx.shapes.group import GroupShape

from propylon.rag.errors import CorruptDocument, DocumentLimitExceeded
from propylon.rag.parsing.archive import checked_archive
from propylon.rag.parsing.document import Block, PageBreak, ParseLimits
from propylon.rag.parsing.table import markdown_table

_WHAT = "The presentation"


def parse_pptx(data: bytes, limits: ParseLimits) -> Iterator[Block | PageBreak]:
    checked_archive(data, limits, _WHAT).close()
    try:
        presentation = pptx.Presentation(io.BytesIO(data))
    except (PackageNotFoundError, KeyError, ValueError, zipfile.BadZipFile, SyntaxError) as exc:
        raise CorruptDocument(f"{_WHAT} is damaged and cannot be read: {exc}.") from None
    slides = list(presentation.slides)
    if len(slides) > limits.max_pages:
        raise DocumentLimitExceeded(
            f"{_WHAT} has {len(slides):,} slides; the limit is {limits.max_pages:,}."
        )
    for number, slide in enumerate(slides, start=1):
        yield PageBreak(number, len(slides), label=f"slide {number}")
        title = slide.shapes.title
        if title is not None and title.has_text_frame and title.text_frame.text.strip():
            yield Block("heading", title.text_frame.text, 1)
        yield from _shapes(slide.shapes, skip=title.shape_id if title is not None else None)
        if slide.has_notes_slide:
            notes = slide.notes_slide.notes_text_frame
            if notes is not None and notes.text.strip():
                yield Block("paragraph", f"Speaker notes: {notes.text}")


def _shapes(shapes: Iterable[BaseShape], *, skip: int | None) -> Iterator[Block]:
    """Text and tables of ``shapes`` in reading order: top to bottom, then left to right."""
    for shape in sorted(shapes, key=lambda s: (s.top or 0, s.left or 0)):
        if shape.shape_id == skip:
            continue
        if isinstance(shape, GroupShape):
            yield from _shapes(shape.shapes, skip=None)
        elif getattr(shape, "has_table", False):
            rows = [[cell.text for cell in row.cells] for row in shape.table.rows]  # type: ignore[attr-defined]
            yield Block("table", markdown_table(rows))
        elif shape.has_text_frame:
            for paragraph in shape.text_frame.paragraphs:  # type: ignore[attr-defined]
                if paragraph.text.strip():
                    yield Block("paragraph", paragraph.text)
