"""Which parser a document needs, judged from its bytes first and its name second.

ZIP-based formats are told apart by their members (``ppt/presentation.xml``,
``xl/workbook.xml``, ``word/document.xml``) or their ``mimetype`` member (EPUB, ODT); e-mail by
its header lines; a mailbox by its ``From `` separator; CSV by rows of equal field counts.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
from typing import Literal

from propylon.rag.errors import CorruptDocument, UnsupportedDocument

Format = Literal[
    "pdf",
    "docx",
    "pptx",
    "xlsx",
    "odt",
    "epub",
    "eml",
    "mbox",
    "csv",
    "image",
    "html",
    "markdown",
    "text",
]

MEDIA_TYPES: dict[Format, str] = {
    "pdf": "application/pdf",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "odt": "application/vnd.oasis.opendocument.text",
    "epub": "application/epub+zip",
    "eml": "message/rfc822",
    "mbox": "application/mbox",
    "csv": "text/csv",
    "image": "image/png",  # see media_type: the image's own type
    "html": "text/html",
    "markdown": "text/markdown",
    "text": "text/plain",
}

# Binary formats recognised only to be refused with a clear name.
_KNOWN_BINARY: tuple[tuple[bytes, str], ...] = (
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
_IMAGES: dict[bytes, str] = {
    b"\x89PNG": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"II*\x00": "image/tiff",
    b"MM\x00*": "image/tiff",
}
_ZIP_MEMBERS: tuple[tuple[str, Format], ...] = (
    ("word/document.xml", "docx"),
    ("ppt/presentation.xml", "pptx"),
    ("xl/workbook.xml", "xlsx"),
)
_ZIP_MIMETYPES: dict[bytes, Format] = {
    b"application/epub+zip": "epub",
    b"application/vnd.oasis.opendocument.text": "odt",
}
# An RFC 5322 message starts with header fields; these show it is mail and not prose.
_HEADER = re.compile(rb"^[A-Za-z][A-Za-z0-9-]*:[ \t]?[^\r\n]*\r?$")
_MAIL_HEADERS = {b"from", b"to", b"subject", b"date", b"message-id", b"received", b"mime-version"}
_MBOX_START = re.compile(rb"^From \S+.*\r?\n[A-Za-z][A-Za-z0-9-]*:")
_CSV_DELIMITERS = ",;\t"
_CSV_MIN_ROWS = 3
_CSV_MAX_FIELD = 200


def sniff(data: bytes, filename: str | None = None, media_type: str | None = None) -> Format:
    """The format of ``data``; raises ``UnsupportedDocument`` for anything else."""
    head = data[:2048]
    if b"%PDF-" in head[:1024]:
        return "pdf"
    if head.startswith(b"PK\x03\x04"):
        return _zip_format(data)
    if head.startswith(tuple(_IMAGES)):
        return "image"
    for magic, name in _KNOWN_BINARY:
        if head.startswith(magic):
            raise UnsupportedDocument(f"The file is {name}, which cannot be ingested.")
    if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnsupportedDocument("The file is binary data of an unsupported format.")
    name = (filename or "").lower()
    kind = (media_type or "").lower()
    if _MBOX_START.match(head):
        return "mbox"
    if _is_mail(head):
        return "eml"
    if _HTML_START.match(head) or name.endswith(_HTML_NAMES) or "html" in kind:
        return "html"
    if name.endswith(_MARKDOWN_NAMES) or "markdown" in kind:
        return "markdown"
    if len(_HTML_TAGS.findall(head)) >= 2:
        return "html"
    if name.endswith(".txt"):
        return "text"
    if name.endswith((".csv", ".tsv")) or kind in ("text/csv", "text/tab-separated-values"):
        return "csv"
    if _MARKDOWN.search(head.decode("utf-8", "ignore")):
        return "markdown"
    if csv_dialect(decode_text(head), min_fields=3) is not None:
        return "csv"
    return "text"


def media_type(kind: Format, data: bytes) -> str:
    """The media type of ``data`` of format ``kind``."""
    if kind == "image":
        return next((media for magic, media in _IMAGES.items() if data.startswith(magic)))
    return MEDIA_TYPES[kind]


def _zip_format(data: bytes) -> Format:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            names = set(archive.namelist())
            mimetype = b""
            if "mimetype" in names:
                with archive.open("mimetype") as stream:
                    mimetype = stream.read(64).strip()  # never inflate more than a name
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError) as exc:
        raise CorruptDocument(f"The file looks like a ZIP archive but is damaged: {exc}.") from None
    for name, kind in _ZIP_MEMBERS:
        if name in names:
            return kind
    if mimetype in _ZIP_MIMETYPES:
        return _ZIP_MIMETYPES[mimetype]
    raise UnsupportedDocument("The file is a ZIP archive, not a document.")


def _is_mail(head: bytes) -> bool:
    """Header lines up to the first blank line, at least two of them ones mail always has."""
    names: set[bytes] = set()
    for line in head.split(b"\n")[:40]:
        if not line.strip():
            break
        if line[:1] in (b" ", b"\t"):
            continue  # a folded header's continuation
        if not _HEADER.match(line):
            return False
        names.add(line.split(b":", 1)[0].lower())
    return len(names & _MAIL_HEADERS) >= 2


def csv_dialect(text: str, *, min_fields: int = 2) -> type[csv.Dialect] | None:
    """The dialect of ``text`` if its first rows all have the same number of short fields (at
    least ``min_fields``): prose with a comma or two per line is not a table."""
    lines = [line for line in text.splitlines()[:20] if line.strip()]
    if len(lines) > 1 and not text.endswith("\n"):
        lines = lines[:-1]  # the sample may cut the last row short
    if len(lines) < _CSV_MIN_ROWS:
        return None
    best, best_width = None, min_fields - 1
    for delimiter in _CSV_DELIMITERS:
        try:
            rows = list(csv.reader(lines, delimiter=delimiter))
        except csv.Error:
            continue
        widths = {len(row) for row in rows}
        longest = max(len(field) for row in rows for field in row)
        width = widths.pop() if len(widths) == 1 else 0
        if width > best_width and longest <= _CSV_MAX_FIELD:
            best, best_width = _DIALECTS[delimiter], width
    return best


class _Semicolon(csv.excel):
    delimiter = ";"


_DIALECTS: dict[str, type[csv.Dialect]] = {",": csv.excel, ";": _Semicolon, "\t": csv.excel_tab}


def decode_text(data: bytes) -> str:
    """Text bytes as a string: UTF-8 (with or without BOM), UTF-16 with a BOM, else cp1252."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")
