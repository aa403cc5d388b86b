"""Which parser a document needs, judged from its bytes first and its name second."""

from __future__ import annotations

import io
import re
import zipfile
from typing import Literal

from propylon.rag.errors import CorruptDocument, UnsupportedDocument

Format = Literal["pdf", "docx", "html", "markdown", "text"]

MEDIA_TYPES: dict[Format, str] = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "html": "text/html",
    "markdown": "text/markdown",
    "text": "text/plain",
}

# Binary formats recognised only to be refused with a clear name.
_KNOWN_BINARY: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"\xd0\xcf\x11\xe0", "a legacy Office file (.doc/.xls/.ppt)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"Rar!", "a RAR archive"),
    (b"7z\xbc\xaf", "a 7-Zip archive"),
    (b"{\\rtf", "an RTF file"),
)
_HTML_START = re.compile(rb"^\s*(<!--.*?-->\s*)*<(!doctype\s+html|html|head|body)\b", re.I | re.S)
_HTML_TAGS = re.compile(rb"<(p|div|h[1-6]|table|ul|ol|article|section)\b[^>]*>", re.I)
_MARKDOWN = re.compile(r"^(#{1,6}\s+\S|```|\* \S|- \S|\d+\. \S)", re.M)
_MARKDOWN_NAMES = (".md", ".markdown", ".mdown")
_HTML_NAMES = (".html", ".htm", ".xhtml")


def sniff(data: bytes, filename: str | None = None, media_type: str | None = None) -> Format:
    """The format of ``data``; raises ``UnsupportedDocument`` for anything else."""
    head = data[:2048]
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return _zip_format(data)
    for magic, name in _KNOWN_BINARY:
        if head.startswith(magic):
            raise UnsupportedDocument(f"The file is {name}, which cannot be ingested.")
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnsupportedDocument("The file is binary data of an unsupported format.")
    name = (filename or "").lower()
    kind = (media_type or "").lower()
    if _HTML_START.match(head) or name.endswith(_HTML_NAMES) or "html" in kind:
        return "html"
    if name.endswith(_MARKDOWN_NAMES) or "markdown" in kind:
        return "markdown"
    if len(_HTML_TAGS.findall(head)) >= 2:
        return "html"
    if name.endswith(".txt"):
        return "text"
    if _MARKDOWN.search(head.decode("utf-8", "ignore")):
        return "markdown"
    return "text"


def _zip_format(data: bytes) -> Format:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile as exc:
        raise CorruptDocument(f"The file looks like a ZIP archive but is damaged: {exc}.") from None
    if "word/document.xml" in names:
        return "docx"
    if "xl/workbook.xml" in names or "ppt/presentation.xml" in names:
        raise UnsupportedDocument("Spreadsheets and presentations cannot be ingested yet.")
    raise UnsupportedDocument("The file is a ZIP archive, not a document.")


def decode_text(data: bytes) -> str:
    """Text bytes as a string: UTF-8 (with or without BOM), UTF-16 with a BOM, else cp1252."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")
