"""Markdown: ATX and setext headings, fenced code, pipe tables (kept whole per row by the
chunker) and paragraphs separated by blank lines. The extracted text keeps the Markdown source
of paragraphs; headings lose their ``#`` marks."""

from __future__ import annotations

import re
from collections.abc import Iterator

from propylon.rag.parsing.document import Block, PageBreak, ParseLimits
from propylon.rag.parsing.sniff import decode_text

_ATX = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_SETEXT = re.compile(r"^(=+|-+)\s*$")
_FENCE = re.compile(r"^(```|~~~)")


def parse_markdown(data: bytes, limits: ParseLimits) -> Iterator[Block | PageBreak]:
    paragraph: list[str] = []
    code: list[str] | None = None

    def flush() -> Iterator[Block]:
        if paragraph:
            table = all(line.lstrip().startswith("|") for line in paragraph)
            yield Block("table" if table else "paragraph", "\n".join(paragraph))
            paragraph.clear()

    for line in decode_text(data).splitlines():
        if code is not None:
            code.append(line)
            if _FENCE.match(line.strip()):
                yield Block("code", "\n".join(code))
                code = None
            continue
        if _FENCE.match(line.strip()):
            yield from flush()
            code = [line]
            continue
        heading = _ATX.match(line)
        if heading:
            yield from flush()
            yield Block("heading", heading[2], len(heading[1]))
            continue
        setext = _SETEXT.match(line)
        if setext and len(paragraph) == 1:
            title = paragraph.pop()
            yield Block("heading", title, 1 if setext[1].startswith("=") else 2)
            continue
        if line.strip():
            paragraph.append(line)
        else:
            yield from flush()
    if code is not None:
        yield Block("code", "\n".join(code))
    yield from flush()
