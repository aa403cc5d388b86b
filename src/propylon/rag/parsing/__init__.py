"""Text extraction, one module per format; ``extract`` picks the parser by content."""

from propylon.rag.parsing.document import Block, PageBreak, ParsedDocument, ParseLimits, Span
from propylon.rag.parsing.extract import PARSERS, extract
from propylon.rag.parsing.sniff import Format, sniff

__all__ = [
    "PARSERS",
    "Block",
    "Format",
    "PageBreak",
    "ParseLimits",
    "ParsedDocument",
    "Span",
    "extract",
    "sniff",
]
