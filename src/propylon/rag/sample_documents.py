"""Documents made from text we know, for the ingestion evaluation (``propylon eval
ingestion``) and the tests: PDFs with ruled tables and scanned pages (reportlab, rendered with
PDFium), presentations (python-pptx), workbooks (openpyxl), e-books and OpenDocument text
(zipped by hand from the XML their specifications define) and e-mail (stdlib ``email``).

reportlab is a development dependency: import this module only from evaluation code and tests.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any

import openpyxl
import pptx
from pptx.util import Inches
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


def presentation(slides: Sequence[tuple[str, str, str]], table: Sequence[Sequence[str]]) -> bytes:
    """Slides of ``(title, body, speaker notes)``; the last slide also holds ``table``."""
    deck = pptx.Presentation()
    for number, (title, body, notes) in enumerate(slides, start=1):
        slide = deck.slides.add_slide(deck.slide_layouts[1])
        slide.shapes.title.text = title
        slide.placeholders[1].text = body
        slide.notes_slide.notes_text_frame.text = notes
        if number == len(slides):
            shape = slide.shapes.add_table(
                len(table), len(table[0]), Inches(1), Inches(5), Inches(6), Inches(1.5)
            )
            for r, row in enumerate(table):
                for c, value in enumerate(row):
                    shape.table.cell(r, c).text = value
    out = io.BytesIO()
    deck.save(out)
    return out.getvalue()


def workbook(sheets: dict[str, Sequence[Sequence[object]]]) -> bytes:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, rows in sheets.items():
        sheet = book.create_sheet(name)
        for row in rows:
            sheet.append(list(row))
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


_CONTAINER = """<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
<rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>
</rootfiles></container>"""


def epub(chapters: Sequence[tuple[str, str]]) -> bytes:
    """An EPUB 3 of ``(title, paragraph)`` chapters, the spine listing them in reverse file
    order so a reader must follow the spine, not the archive."""
    items = "".join(
        f'<item id="c{i}" href="text/ch{i}.xhtml" media-type="application/xhtml+xml"/>'
        for i in range(len(chapters))
    )
    spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
    opf = (
        '<?xml version="1.0"?><package xmlns="http://www.idpf.org/2007/opf" version="3.0">'
        '<metadata xmlns:dc="http://purl.org/dc/elements/1.1/"><dc:title>Book</dc:title>'
        f"</metadata><manifest>{items}</manifest><spine>{spine}</spine></package>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/epub+zip", zipfile.ZIP_STORED)
        archive.writestr("META-INF/container.xml", _CONTAINER)
        archive.writestr("OEBPS/content.opf", opf)
        for i, (title, text) in reversed(list(enumerate(chapters))):
            archive.writestr(
                f"OEBPS/text/ch{i}.xhtml",
                '<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><head>'
                f"<title>{title}</title></head><body><h1>{title}</h1><p>{text}</p></body></html>",
            )
    return out.getvalue()


_ODT_NS = (
    'xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
    'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
    'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0"'
)


def odt(heading: str, paragraph: str, table: Sequence[Sequence[str]]) -> bytes:
    rows = "".join(
        "<table:table-row>"
        + "".join(f"<table:table-cell><text:p>{v}</text:p></table:table-cell>" for v in row)
        + "</table:table-row>"
        for row in table
    )
    content = (
        f'<?xml version="1.0"?><office:document-content {_ODT_NS}><office:body><office:text>'
        f'<text:h text:outline-level="1">{heading}</text:h>'
        f"<text:p>{paragraph.replace('  ', '<text:s/> ')}</text:p>"
        f"<table:table>{rows}</table:table>"
        "</office:text></office:body></office:document-content>"
    )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("mimetype", "application/vnd.oasis.opendocument.text", zipfile.ZIP_STORED)
        archive.writestr("content.xml", content)
    return out.getvalue()


def email(
    subject: str,
    body: str,
    *,
    html: str | None = None,
    attachment: tuple[str, bytes, str] | None = None,
) -> bytes:
    """A message with a plain body (and an HTML alternative), and an attachment
    ``(filename, bytes, media type)``."""
    message = EmailMessage()
    message["From"] = "Ada <ada@example.com>"
    message["To"] = "team@example.com"
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime(2026, 3, 1, 9, 30, tzinfo=UTC))
    message.set_content(body)
    if html is not None:
        message.add_alternative(html, subtype="html")
    if attachment is not None:
        name, data, media = attachment
        main, sub = media.split("/")
        message.add_attachment(data, maintype=main, subtype=sub, filename=name)
    return bytes(message)


def mbox(messages: Sequence[bytes]) -> bytes:
    return b"".join(
        b"From ada@example.com Sun Mar  1 09:30:00 2026\n"
        + m.replace(b"\r\n", b"\n").replace(b"\nFrom ", b"\n>From ")
        + b"\n"
        for m in messages
    )


def pdf_with_table(
    before: str, rows: Sequence[Sequence[str]], after: str, *, pages: int = 1
) -> bytes:
    """``pages`` pages, each a line of text, a ruled table of ``rows`` below it, then a line."""
    from reportlab.lib import colors
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    buffer = io.BytesIO()
    style = getSampleStyleSheet()["Normal"]
    story: list[object] = []
    for number in range(pages):
        table = Table([list(row) for row in rows])
        table.setStyle(TableStyle([("GRID", (0, 0), (-1, -1), 0.5, colors.black)]))
        story += [Paragraph(before, style), Spacer(1, 12), table, Spacer(1, 12)]
        story += [Paragraph(after, style)]
        if number < pages - 1:
            from reportlab.platypus import PageBreak as ReportlabPageBreak

            story.append(ReportlabPageBreak())
    SimpleDocTemplate(buffer, pagesize=A4).build(story)
    return buffer.getvalue()


def scanned_pdf(pages: Sequence[Sequence[str]], *, text_layer_first: bool = False) -> bytes:
    """Pages that are pictures of text (no text layer), as a scanner makes them: each page's
    lines drawn into a PDF, rendered to an image at 144 dpi, and that image placed on a page
    of its own. ``text_layer_first`` puts an ordinary text page before them."""
    from reportlab.lib.utils import ImageReader

    width = max(_width(lines) for lines in pages)
    height = 40 + 22 * max(len(lines) for lines in pages)
    buffer = io.BytesIO()
    page_canvas = canvas.Canvas(buffer, pagesize=(width, height))
    if text_layer_first:
        page_canvas.setFont("Helvetica", 12)
        page_canvas.drawString(20, height - 30, "This first page has a real text layer.")
        page_canvas.showPage()
    for lines in pages:
        image = page_image(lines, width, height)
        page_canvas.drawImage(ImageReader(image), 0, 0, width, height)
        page_canvas.showPage()
    page_canvas.save()
    return buffer.getvalue()


def _width(lines: Sequence[str]) -> int:
    """A page wide enough for ``lines`` in 13 pt Helvetica with 20 pt margins: a scanner does
    not cut lines off at the paper's edge."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    return max(420, *(int(stringWidth(line, "Helvetica", 13)) + 40 for line in lines))


def page_image(lines: Sequence[str], width: int | None = None, height: int | None = None) -> Any:
    """``lines`` of 13 pt Helvetica rendered to a greyscale PIL image at 144 dpi."""
    import pypdfium2 as pdfium

    width = width or _width(lines)
    height = height or 40 + 22 * len(lines)
    source = io.BytesIO()
    page_canvas = canvas.Canvas(source, pagesize=(width, height))
    page_canvas.setFont("Helvetica", 13)
    for i, line in enumerate(lines):
        page_canvas.drawString(20, height - 30 - 22 * i, line)
    page_canvas.showPage()
    page_canvas.save()
    document = pdfium.PdfDocument(source.getvalue())
    try:
        return document[0].render(scale=2.0, grayscale=True).to_pil()
    finally:
        document.close()


def png(lines: Sequence[str]) -> bytes:
    """A screenshot-like PNG of ``lines``."""
    out = io.BytesIO()
    page_image(lines).save(out, format="PNG")
    return out.getvalue()
