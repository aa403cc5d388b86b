"""Real files of the formats beyond PDF and DOCX, made in tests with the libraries that write
them (python-pptx, openpyxl, stdlib ``email``) or, for EPUB and ODT, zipped by hand from the
XML their specifications define."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

import openpyxl
import pptx
from pptx.util import Inches


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
