"""ZIP-based formats (DOCX, PPTX, XLSX, ODT, EPUB): the archive checked before any library
reads it.

Every member is inflated once, counting the bytes that really come out against
``max_decompressed_bytes`` (a "zip bomb" may lie about its sizes in its headers), in chunks, so
the check itself holds one chunk in memory. A parser reads members only after this passed.
"""

from __future__ import annotations

import io
import zipfile
import zlib

from propylon.rag.errors import CorruptDocument, DocumentLimitExceeded
from propylon.rag.parsing.document import ParseLimits

_CHUNK = 1024 * 1024


def checked_archive(data: bytes, limits: ParseLimits, what: str) -> zipfile.ZipFile:
    """``data`` opened as a ZIP archive once every member inflated within the budget;
    ``what`` names the document in errors ("The Word document")."""
    budget = limits.max_decompressed_bytes
    total = 0
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        for info in archive.infolist():
            with archive.open(info) as member:
                while chunk := member.read(_CHUNK):
                    total += len(chunk)
                    if total > budget:
                        raise DocumentLimitExceeded(
                            f"{what} expands to more than {budget:,} bytes (the limit)."
                        )
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        raise CorruptDocument(f"{what} is damaged: {exc}.") from None
    return archive


def read_member(archive: zipfile.ZipFile, name: str, what: str) -> bytes:
    """One member's bytes; a member the document needs but lacks is damage."""
    try:
        return archive.read(name)
    except KeyError:
        raise CorruptDocument(f"{what} is damaged: it has no {name}.") from None
