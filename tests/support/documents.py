"""Real documents made in tests: PDFs (reportlab), encrypted PDFs (pypdf), DOCX (python-docx)."""

from __future__ import annotations

import io
from collections.abc import Sequence

import docx
from pypdf import PdfReader, PdfWriter
from reportlab.lib.pagesizes import A4
from reportlab.pdfgen import canvas

PAGE_WIDTH, PAGE_HEIGHT = A4


def pdf(
    pages: Sequence[Sequence[str]],
    *,
    header: str | None = None,
    footer_page_numbers: bool = False,
) -> bytes:
    """A PDF with one list of lines per page, a running header and numbered footers."""
    buffer = io.BytesIO()
    page_canvas = canvas.Canvas(buffer, pagesize=A4)
    for number, lines in enumerate(pages, start=1):
        page_canvas.setFont("Helvetica", 11)
        if header:
            page_canvas.drawString(72, PAGE_HEIGHT - 40, header)
        text = page_canvas.beginText(72, PAGE_HEIGHT - 90)
        for line in lines:
            text.textLine(line)
        page_canvas.drawText(text)
        if footer_page_numbers:
            page_canvas.drawString(PAGE_WIDTH / 2 - 20, 30, f"Page {number} of {len(pages)}")
        page_canvas.showPage()
    page_canvas.save()
    return buffer.getvalue()


def two_column_pdf(left: Sequence[str], right: Sequence[str]) -> bytes:
    """One page, two columns of lines side by side, as a journal lays out an article."""
    buffer = io.BytesIO()
    page_canvas = canvas.Canvas(buffer, pagesize=A4)
    page_canvas.setFont("Helvetica", 10)
    for x, lines in ((60, left), (PAGE_WIDTH / 2 + 20, right)):
        text = page_canvas.beginText(x, PAGE_HEIGHT - 80)
        for line in lines:
            text.textLine(line)
        page_canvas.drawText(text)
    page_canvas.showPage()
    page_canvas.save()
    return buffer.getvalue()


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
