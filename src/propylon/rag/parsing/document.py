"""What a parser produces: one extracted text, its blocks and its pages.

Parsers yield ``PageBreak`` and ``Block`` items; ``DocumentBuilder`` joins the blocks into one
text (blocks separated by a blank line), NFKC-normalised, and records where each block and
each page starts. Chunk offsets are offsets into that text, so citations can point back into it.

A "page" is the unit a citation names: a PDF page, a slide, a range of a sheet's rows, an
e-book chapter, a message of a mailbox. Formats whose unit is not a printed page give each one
a ``label`` ("slide 3", "sheet Sales, rows 2-41"), which chunks carry as their ``location``.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Literal

from propylon.rag.errors import DocumentLimitExceeded

BlockKind = Literal["heading", "paragraph", "table", "code"]

# Controls other than tab and line feed; U+0002 and U+FFFE are PDFium's soft-hyphen markers,
# removed earlier with the line break that follows them.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]")
_TRAILING_SPACE = re.compile(r"[ \t]+\n")
_BLANK_LINES = re.compile(r"\n{3,}")


@dataclass(frozen=True, slots=True)
class PageBreak:
    """The blocks that follow are on page ``number`` (1-based) of ``total``.

    ``label`` names the page in a citation when it is not a printed page ("slide 3");
    ``ocr_confidence`` (0-1) is set when the page's text was read from its image.
    """

    number: int
    total: int | None = None
    label: str | None = None
    ocr_confidence: float | None = None


@dataclass(frozen=True, slots=True)
class Block:
    """A heading, paragraph, table or code block as the parser found it."""

    kind: BlockKind
    text: str
    level: int = 0  # heading level, 1 = top


@dataclass(frozen=True, slots=True)
class Attachment:
    """A file inside a document (an e-mail's attachment) to ingest as a child document;
    ``location`` names it in citations ("message 2, attachment plan.pdf")."""

    name: str
    data: bytes
    location: str


@dataclass(frozen=True, slots=True)
class Span:
    """A block's place in the extracted text: ``text[start:end]``."""

    kind: BlockKind
    start: int
    end: int
    level: int = 0


@dataclass(slots=True)
class ParsedDocument:
    """The extracted text of one document and its structure."""

    text: str
    spans: list[Span]
    page_starts: list[int] = field(default_factory=list)  # offset where page i + 1 starts
    media_type: str = "text/plain"
    page_labels: list[str | None] = field(default_factory=list)  # page i + 1's label
    page_ocr: list[float | None] = field(default_factory=list)  # page i + 1's OCR confidence
    attachments: list[Attachment] = field(default_factory=list)  # child documents to ingest

    @property
    def page_count(self) -> int | None:
        return len(self.page_starts) or None

    def page_at(self, offset: int) -> int | None:
        """The 1-based page holding ``offset``, or ``None`` for a format without pages."""
        if not self.page_starts:
            return None
        return max(1, bisect_right(self.page_starts, offset))

    def location(self, first: int | None, last: int | None) -> str | None:
        """How a citation names pages ``first``..``last``: their labels, if they have any."""
        start = self._label(first)
        end = self._label(last)
        if start is None:
            return None
        return start if end is None or end == start else f"{start} – {end}"

    def ocr_confidence(self, first: int | None, last: int | None) -> float | None:
        """The lowest OCR confidence of pages ``first``..``last``; ``None`` if none was read
        from an image."""
        if first is None or not self.page_ocr:
            return None
        values = [c for c in self.page_ocr[first - 1 : (last or first)] if c is not None]
        return min(values) if values else None

    def _label(self, page: int | None) -> str | None:
        if page is None or not 0 < page <= len(self.page_labels):
            return None
        return self.page_labels[page - 1]


def clean_text(text: str) -> str:
    """NFKC, no control characters, no trailing spaces, at most one blank line in a row."""
    text = unicodedata.normalize("NFKC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = _CONTROL.sub("", text)
    text = _TRAILING_SPACE.sub("\n", text)
    return _BLANK_LINES.sub("\n\n", text).strip()


class DocumentBuilder:
    """Assembles parser output into a ``ParsedDocument``."""

    def __init__(self, media_type: str, *, max_chars: int) -> None:
        self._parts: list[str] = []
        self._length = 0
        self._spans: list[Span] = []
        self._page_starts: list[int] = []
        self._page_labels: list[str | None] = []
        self._page_ocr: list[float | None] = []
        self._media_type = media_type
        self._attachments: list[Attachment] = []
        self._max_chars = max_chars

    @property
    def length(self) -> int:
        return self._length

    def page(self, number: int, label: str | None = None, ocr: float | None = None) -> None:
        # A page with no text still starts somewhere: at the next block's offset.
        while len(self._page_starts) < number:
            self._page_starts.append(self._length + (2 if self._length else 0))
            self._page_labels.append(None)
            self._page_ocr.append(None)
        self._page_labels[number - 1] = label
        self._page_ocr[number - 1] = ocr

    def add(self, block: Block) -> None:
        text = clean_text(block.text)
        if not text:
            return
        if self._parts:
            self._parts.append("\n\n")
            self._length += 2
        start = self._length
        self._parts.append(text)
        self._length += len(text)
        self._spans.append(Span(block.kind, start, self._length, block.level))
        if self._length > self._max_chars:
            raise DocumentLimitExceeded(
                f"The extracted text is longer than the limit of {self._max_chars:,} characters."
            )

    def attach(self, attachment: Attachment, *, limit: int) -> None:
        if len(self._attachments) >= limit:
            raise DocumentLimitExceeded(f"The document has more than {limit:,} attachments.")
        self._attachments.append(attachment)

    def build(self) -> ParsedDocument:
        text = "".join(self._parts)
        starts = [min(start, len(text)) for start in self._page_starts]
        labels = self._page_labels if any(self._page_labels) else []
        ocr = self._page_ocr if any(c is not None for c in self._page_ocr) else []
        return ParsedDocument(
            text, self._spans, starts, self._media_type, labels, ocr, self._attachments
        )


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Bounds on one document's parse, from the ingestion settings."""

    max_pages: int = 2000
    max_decompressed_bytes: int = 200 * 1024 * 1024
    max_chars: int = 20_000_000
    parse_timeout_s: float = 300.0
    max_memory_bytes: int = 2 * 1024 * 1024 * 1024  # the parsing process's address space
    max_ocr_pages: int = 200  # pages of one document read from their image
    ocr_max_pixels: int = 2_500_000  # an image is scaled down to this before OCR reads it
