"""From uploaded bytes to a ``ParsedDocument``: sniff the format, run its parser, enforce limits.

Parsers are synchronous generators that yield a page or a block at a time. ``parse_document``
drives one to the end; it runs in a child process of its own (``isolated.extract``), where a
native call that never returns, or a file that needs gigabytes, costs that process and not the
worker. The time limit is checked between items here, and enforced by killing the process
when a single native call outlasts it.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable, Iterator

from propylon.errors import PropylonError
from propylon.rag.errors import CorruptDocument, DocumentLimitExceeded, EmptyDocument
from propylon.rag.parsing.document import (
    Attachment,
    Block,
    DocumentBuilder,
    PageBreak,
    ParsedDocument,
    ParseLimits,
)
from propylon.rag.parsing.sniff import Format, sniff
from propylon.rag.parsing.sniff import media_type as media_type_of

Parser = Callable[[bytes, ParseLimits], Iterator[Block | PageBreak | Attachment]]


# Format -> "module:function", imported on first use: PDFium, lxml, python-docx, openpyxl and
# lexbor add tens of MB to a process's RSS, which a gateway that never ingests need not carry.
PARSERS: dict[Format, str] = {
    "pdf": "pdf:parse_pdf",
    "docx": "docx:parse_docx",
    "pptx": "pptx:parse_pptx",
    "xlsx": "sheets:parse_xlsx",
    "csv": "sheets:parse_csv",
    "odt": "odt:parse_odt",
    "epub": "epub:parse_epub",
    "eml": "mail:parse_eml",
    "mbox": "mail:parse_mbox",
    "image": "image:parse_image",
    "html": "html:parse_html",
    "markdown": "markdown:parse_markdown",
    "text": "text:parse_text",
}


def parser_for(kind: Format) -> Parser:
    """The format's parser (see ``PARSERS``)."""
    module, name = PARSERS[kind].split(":")
    parser: Parser = getattr(importlib.import_module(f"propylon.rag.parsing.{module}"), name)
    return parser


OnPage = Callable[[int, int | None], None]


def parse_document(
    data: bytes,
    *,
    filename: str | None = None,
    media_type: str | None = None,
    limits: ParseLimits | None = None,
    on_page: OnPage | None = None,
) -> ParsedDocument:
    """The text and structure of ``data``, computed here and now (see ``isolated.extract``).

    Raises a ``DocumentRejected`` subclass for an unsupported, damaged, encrypted or empty file
    and for one over a limit; any other failure inside a parser is reported as damage.
    """
    limits = limits or ParseLimits()
    if not data:
        raise EmptyDocument("The file is empty.")
    kind = sniff(data, filename, media_type)
    builder = DocumentBuilder(media_type_of(kind, data), max_chars=limits.max_chars)
    deadline = time.monotonic() + limits.parse_timeout_s
    try:
        for item in parser_for(kind)(data, limits):
            if isinstance(item, PageBreak):
                builder.page(item.number, item.label, item.ocr_confidence)
                if on_page is not None:
                    on_page(item.number, item.total)
            elif isinstance(item, Attachment):
                builder.attach(item, limit=limits.max_pages)
            else:
                builder.add(item)
            if time.monotonic() > deadline:
                raise DocumentLimitExceeded(
                    f"Parsing took longer than the limit of {limits.parse_timeout_s:g} s."
                )
    except (PropylonError, MemoryError):
        raise
    except Exception as exc:
        raise CorruptDocument(
            f"The {kind.upper()} file could not be parsed: {type(exc).__name__}: {exc}"
        ) from exc
    parsed = builder.build()
    if not parsed.text.strip():
        what = "scanned images without a text layer?" if kind == "pdf" else "no text"
        raise EmptyDocument(f"No text could be extracted from the {kind.upper()} file ({what}).")
    return parsed
