"""Plain text: paragraphs separated by blank lines."""

from __future__ import annotations

import re
from collections.abc import Iterator

from propylon.rag.parsing.document import Block, PageBreak, ParseLimits
from propylon.rag.parsing.sniff import decode_text

_PARAGRAPH_GAP = re.compile(r"\n[ \t]*\n")


def parse_text(data: bytes, limits: ParseLimits) -> Iterator[Block | PageBreak]:
    text = decode_text(data).replace("\r\n", "\n").replace("\r", "\n")
    for paragraph in _PARAGRAPH_GAP.split(text):
        if paragraph.strip():
            yield Block("paragraph", paragraph)
