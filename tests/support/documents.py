"""Real documents made in tests: PDFs (reportlab), encrypted PDFs (pypdf), DOCX (python-docx)."""

from __future__ import annotations

import io
import struct
import zipfile

import docx
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

PAGE_WIDTH, PAGE_HEIGHT = A4


def encrypted(pdf_bytes: bytes, password: str = "secret") -> bytes:
    writer = PdfWriter()
    for page in PdfReader(io.BytesIO(pdf_bytes)).pages:
        writer.add_page(page)
    writer.encrypt(user_password=password, owner_password=password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def docx_with_table() -> bytes:
    """A Word document: heading, paragraph, a 2x3 table, then a closing paragraph."""
    document = docx.Document()
    document.add_heading("Quarterly report", level=1)
    document.add_paragraph("Revenue grew in every region this quarter.")
    table = document.add_table(rows=3, cols=2)
    for row, (region, value) in enumerate(
        [("Region", "Revenue"), ("North", "120"), ("South", "95")]
    ):
        table.cell(row, 0).text = region
        table.cell(row, 1).text = value
    document.add_heading("Outlook", level=2)
    document.add_paragraph("We expect steady growth next year.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# Hostile files (issue 27): each must fail its own job and cost the worker nothing.

_DOCX_PARAGRAPH = b"<w:p><w:r><w:t>a</w:t></w:r></w:p>"


def nested_html(depth: int = 200_000) -> bytes:
    """``depth`` nested ``<div>``: lexbor spends minutes in one native call on it."""
    return b"<html><body>" + b"<div>" * depth + b"deep" + b"</div>" * depth + b"</body></html>"


def docx_of_tiny_paragraphs(xml_bytes: int = 190 * 1024 * 1024) -> bytes:
    """A valid DOCX whose document.xml is ``xml_bytes`` of one-character paragraphs: well under
    the decompression limit, yet gigabytes once python-docx has built its tree."""
    base = docx_with_table()
    out = io.BytesIO()
    with (
        zipfile.ZipFile(io.BytesIO(base)) as source,
        zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target,
    ):
        for info in source.infolist():
            if info.filename != "word/document.xml":
                target.writestr(info, source.read(info))
                continue
            xml = source.read(info)
            head, _, rest = xml.partition(b"<w:body>")
            _, _, tail = rest.partition(b"</w:body>")
            with target.open("word/document.xml", "w", force_zip64=True) as member:
                member.write(head + b"<w:body>")
                block = _DOCX_PARAGRAPH * 30_000
                for _ in range(xml_bytes // len(block)):
                    member.write(block)
                member.write(b"</w:body>" + tail)
    return out.getvalue()


def lying_zip_bomb(real_bytes: int = 1024 * 1024 * 1024, base: bytes | None = None) -> bytes:
    """A DOCX (or the ZIP-based ``base``) with a member of ``real_bytes`` zeros whose headers
    claim 1 KB: a check that trusts ``ZipInfo.file_size`` lets it through."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        with zipfile.ZipFile(io.BytesIO(base or docx_with_table())) as source:
            for info in source.infolist():
                archive.writestr(info, source.read(info))
        with archive.open("word/media/bomb.bin", "w") as member:
            chunk = bytes(1024 * 1024)
            for _ in range(real_bytes // len(chunk)):
                member.write(chunk)
    data = bytearray(out.getvalue())
    _lie_about_size(data, b"word/media/bomb.bin", 1024)
    return bytes(data)


def _lie_about_size(data: bytearray, name: bytes, claimed: int) -> None:
    """Rewrite the uncompressed size of ``name`` in its local header and in the central
    directory to ``claimed``."""
    start = 0
    while (at := data.find(name, start)) != -1:
        start = at + len(name)
        if data[at - 30 : at - 26] == b"PK\x03\x04":  # local file header: size at +22
            struct.pack_into("<I", data, at - 30 + 22, claimed)
        elif data[at - 46 : at - 42] == b"PK\x01\x02":  # central directory: size at +24
            struct.pack_into("<I", data, at - 46 + 24, claimed)


def blank_pdf(pages: int = 2000) -> bytes:
    """``pages`` empty pages: nothing to extract, and a parse that must still end quickly."""
    buffer = io.BytesIO()
    page_canvas = canvas.Canvas(buffer, pagesize=A4)
    for _ in range(pages):
        page_canvas.showPage()
    page_canvas.save()
    return buffer.getvalue()


def corrupt_pdf() -> bytes:
    """A PDF header, then a cross-reference table and objects cut to pieces."""
    good = pdf([["this text is lost"]])
    return good[:400] + bytes(range(256)) * 8 + good[-200:]


# Builders shared with `propylon eval ingestion`.
from propylon.rag.sample_documents import (  # noqa: E402
    page_image,
    pdf,
    pdf_with_table,
    png,
    scanned_pdf,
    two_column_pdf,
)

__all__ = ["page_image", "pdf", "pdf_with_table", "png", "scanned_pdf", "two_column_pdf"]
