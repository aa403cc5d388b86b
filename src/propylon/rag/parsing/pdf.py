"""PDF text, page by page, with PDFium (pypdfium2) and pypdf as the fallback.

PDFium keeps the reading order of multi-column layouts and marks the hyphen of a word broken
across lines with U+0002 (U+FFFE in pypdfium2's text), which is removed together with the
line break so the word comes back whole. Lines repeated at the top or bottom of most pages
(running headers, footers, page numbers) are dropped. Ruled tables become Markdown tables in
their place (``pdf_tables``). A page without a usable text layer (fewer than
``MIN_TEXT_CHARS`` characters) that shows an image is rendered and read by OCR (``ocr``), its
page marked with the engine's confidence. Each page is loaded, read and closed before the
next, so memory stays flat however long the document is.

PDFium is not thread-safe: this runs on the worker's own thread, never in a thread pool.
"""

from __future__ import annotations

import io
import re
from collections import Counter
from collections.abc import Iterator

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from propylon.rag.errors import CorruptDocument, DocumentLimitExceeded, EncryptedDocument
from propylon.rag.parsing.document import Block, PageBreak, ParseLimits
from propylon.rag.parsing.ocr import PageReader
from propylon.rag.parsing.pdf_tables import (
    TABLE_MARK,
    TableFinder,
    has_rules,
    page_text_with_tables,
)

_SOFT_HYPHEN = re.compile(r"[\x02\ufffe]\r?\n?")
_DIGITS = re.compile(r"\d+")
_PARAGRAPH_GAP = re.compile(r"\n\s*\n")
EDGE_LINES = 2  # lines at the top and at the bottom of a page that may be running heads
MIN_REPEATS = 3  # pages a line must appear on before it counts as a running head
MAX_HEAD_WORDS_MASKED = 5
MIN_TEXT_CHARS = 16  # fewer non-space characters on a page with an image: read it by OCR
OCR_SCALE = 2.0  # render scanned pages at 144 dpi (ocr_max_pixels bounds the size too)

PageText = tuple[str, float | None]  # a page's text and, if read by OCR, its confidence


def parse_pdf(data: bytes, limits: ParseLimits) -> Iterator[Block | PageBreak]:
    """Pages of ``data`` as paragraphs; falls back to pypdf when PDFium cannot open it."""
    try:
        document = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise EncryptedDocument(
                "The PDF is encrypted with a password; upload an unencrypted copy."
            ) from None
        yield from _parse_with_pypdf(data, limits)
        return
    finder = TableFinder(data)
    try:
        yield from _pages(_pdfium_pages(document, limits, finder), len(document))
    finally:
        finder.close()
        document.close()


def _check_pages(count: int, limits: ParseLimits) -> None:
    if count > limits.max_pages:
        raise DocumentLimitExceeded(
            f"The PDF has {count:,} pages; the limit is {limits.max_pages:,}."
        )


def _pdfium_pages(
    document: pdfium.PdfDocument, limits: ParseLimits, finder: TableFinder
) -> Iterator[PageText]:
    _check_pages(len(document), limits)
    reader = PageReader(limits)
    for index in range(len(document)):
        page = document[index]
        try:
            textpage = page.get_textpage()
            try:
                yield _page_text(page, textpage, finder, index, reader)
            finally:
                textpage.close()
        finally:
            page.close()


def _page_text(
    page: pdfium.PdfPage,
    textpage: pdfium.PdfTextPage,
    finder: TableFinder,
    index: int,
    reader: PageReader,
) -> PageText:
    text: str = textpage.get_text_range()
    if len("".join(text.split())) < MIN_TEXT_CHARS and _shows_an_image(page):
        read = reader.read(page.render(scale=OCR_SCALE, grayscale=True).to_pil())
        return read.text, read.confidence
    tables = finder.tables(index) if has_rules(page) else []
    if tables:
        width, height = page.get_size()
        return page_text_with_tables(textpage, width, height, tables), None
    return text, None


def _shows_an_image(page: pdfium.PdfPage) -> bool:
    images = page.get_objects(filter=(pdfium_c.FPDF_PAGEOBJ_IMAGE,), max_depth=2)
    return next(iter(images), None) is not None


def _parse_with_pypdf(data: bytes, limits: ParseLimits) -> Iterator[Block | PageBreak]:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise EncryptedDocument(
                "The PDF is encrypted with a password; upload an unencrypted copy."
            )
        count = len(reader.pages)
    except (PdfReadError, ValueError, KeyError, TypeError) as exc:
        raise CorruptDocument(f"The PDF is damaged and cannot be read: {exc}.") from None
    _check_pages(count, limits)

    def texts() -> Iterator[PageText]:
        for page in reader.pages:
            try:
                yield page.extract_text() or "", None
            except (PdfReadError, ValueError, KeyError, TypeError) as exc:
                raise CorruptDocument(f"A page of the PDF is damaged: {exc}.") from None

    yield from _pages(texts(), count)


def _pages(texts: Iterator[PageText], count: int) -> Iterator[Block | PageBreak]:
    """Paragraphs of each page, without running heads.

    Running heads are recognised from the first pages' edges (with digits masked, so "Page 3"
    and "Page 4" are the same line), learnt as the pages stream past: a line seen at an edge of
    ``MIN_REPEATS`` pages — or of every page of a shorter document — is dropped from then on,
    and earlier pages are held back only until that decision can be made.
    """
    threshold = min(MIN_REPEATS, count) if count > 1 else 2  # a one-page PDF has no heads
    seen: Counter[str] = Counter()
    held: list[tuple[int, list[str], float | None]] = []
    for number, (raw, confidence) in enumerate(texts, start=1):
        lines = _SOFT_HYPHEN.sub("", raw).replace("\r\n", "\n").replace("\r", "\n").split("\n")
        for key in {_edge_key(lines[i]) for i in _edges(lines)}:
            if key:
                seen[key] += 1
        held.append((number, lines, confidence))
        if number >= threshold:
            repeated = {key for key, times in seen.items() if times >= threshold}
            for held_page in held:
                yield from _page_blocks(*held_page, count=count, repeated=repeated)
            held.clear()
    repeated = {key for key, times in seen.items() if times >= threshold}
    for held_page in held:
        yield from _page_blocks(*held_page, count=count, repeated=repeated)


def _edges(lines: list[str]) -> set[int]:
    """Indices of the first and last non-blank lines of a page; a table's rows (a table's
    header repeated on each page) are never running heads."""
    content = [i for i, line in enumerate(lines) if line.strip() and not _in_table(line)]
    return set(content[:EDGE_LINES] + content[-EDGE_LINES:])


def _edge_key(line: str) -> str:
    """A line as a running head is recognised: page numbers vary, so digits are masked in
    short lines ("Page 3 of 9", "12 | Journal"); longer lines must repeat exactly."""
    words = line.split()
    key = " ".join(words).lower()
    return _DIGITS.sub("#", key) if len(words) <= MAX_HEAD_WORDS_MASKED else key


def _page_blocks(
    number: int, lines: list[str], confidence: float | None, *, count: int, repeated: set[str]
) -> Iterator[Block | PageBreak]:
    yield PageBreak(number, count, ocr_confidence=confidence)
    edges = _edges(lines)
    kept = [
        line for i, line in enumerate(lines) if not (i in edges and _edge_key(line) in repeated)
    ]
    for paragraph in _PARAGRAPH_GAP.split("\n".join(kept)):
        body = paragraph.strip()
        if body.startswith(TABLE_MARK):
            yield Block("table", body.strip(TABLE_MARK))
        elif body:
            yield Block("paragraph", paragraph)


def _in_table(line: str) -> bool:
    return line.startswith(("|", TABLE_MARK))
