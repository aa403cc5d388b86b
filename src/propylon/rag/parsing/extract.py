"""From uploaded bytes to a ``ParsedDocument``: sniff the format, run its parser, enforce limits.

Parsers are synchronous generators that yield a page or a block at a time. ``extract`` drives
one on the event loop's own thread — PDFium must never run in a thread pool — and hands the
loop back between pages and every few blocks, so heartbeats, progress events and cancellation
keep flowing during a long parse, and the time limit is checked as it goes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator

from propylon.errors import PropylonError
from propylon.rag.errors import CorruptDocument, DocumentLimitExceeded, EmptyDocument
from propylon.rag.parsing.document import (
    Block,
    DocumentBuilder,
    PageBreak,
    ParsedDocument,
    ParseLimits,
)
from propylon.rag.parsing.sniff import MEDIA_TYPES, Format, sniff

Parser = Callable[[bytes, ParseLimits], Iterator[Block | PageBreak]]
OnPage = Callable[[int, int | None], Awaitable[None]]


def parser_for(kind: Format) -> Parser:
    """The format's parser, imported on first use: PDFium, lxml, python-docx and lexbor add
    about 14 MB to a process's RSS, which a gateway that never ingests need not carry."""
    if kind == "pdf":
        from propylon.rag.parsing.pdf import parse_pdf

        return parse_pdf
    if kind == "docx":
        from propylon.rag.parsing.docx import parse_docx

        return parse_docx
    if kind == "html":
        from propylon.rag.parsing.html import parse_html

        return parse_html
    if kind == "markdown":
        from propylon.rag.parsing.markdown import parse_markdown

        return parse_markdown
    from propylon.rag.parsing.text import parse_text

    return parse_text


YIELD_EVERY_BLOCKS = 32


async def extract(
    data: bytes,
    *,
    filename: str | None = None,
    media_type: str | None = None,
    limits: ParseLimits | None = None,
    on_page: OnPage | None = None,
) -> ParsedDocument:
    """The text and structure of ``data``.

    Raises a ``DocumentRejected`` subclass for an unsupported, damaged, encrypted or empty file
    and for one over a limit; any other failure inside a parser is reported as damage.
    """
    limits = limits or ParseLimits()
    if not data:
        raise EmptyDocument("The file is empty.")
    kind = sniff(data, filename, media_type)
    builder = DocumentBuilder(MEDIA_TYPES[kind], max_chars=limits.max_chars)
    deadline = time.monotonic() + limits.parse_timeout_s
    blocks = 0
    try:
        for item in parser_for(kind)(data, limits):
            if isinstance(item, PageBreak):
                builder.page(item.number)
                if on_page is not None:
                    await on_page(item.number, item.total)
                await _pause(deadline, limits)
                continue
            builder.add(item)
            blocks += 1
            if blocks % YIELD_EVERY_BLOCKS == 0:
                await _pause(deadline, limits)
    except PropylonError:
        raise
    except (MemoryError, asyncio.CancelledError):
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


async def _pause(deadline: float, limits: ParseLimits) -> None:
    await asyncio.sleep(0)
    if time.monotonic() > deadline:
        raise DocumentLimitExceeded(
            f"Parsing took longer than the limit of {limits.parse_timeout_s:g} s."
        )
