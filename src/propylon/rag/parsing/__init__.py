"""Text extraction, one module per format; ``extract`` picks the parser by content."""

from propylon.rag.parsing.document import Block, PageBreak, ParsedDocument, ParseLimits, Span
from propylon.rag.parsing.extract import parse_document, parser_for
from propylon.rag.parsing.isolated import extract
from propylon.rag.parsing.sniff import Format, sniff

__all__ = [
    "Block",
    "Format",
    "PageBreak",
    "ParseLimits",
    "ParsedDocument",
    "Span",
    "extract",
    "parse_document",
    "parser_for",
    "sniff",
]
