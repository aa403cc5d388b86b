"""Presentations, workbooks, CSV, e-books, OpenDocument and e-mail: real files made by their
libraries, parsed in the sandboxed process, each recognised by content and each chunk saying
where it is (slide, sheet and rows, chapter, message)."""

from __future__ import annotations

import io
import zipfile

import pytest

from propylon.rag.chunking import Chunker, ChunkingConfig
from propylon.rag.errors import CorruptDocument, DocumentLimitExceeded
from propylon.rag.parsing import ParseLimits, extract, sniff
from tests.support import documents, formats


def words(text: str) -> int:
    return len(text.split())


async def test_pptx_slides_titles_notes_and_tables_each_cite_their_slide() -> None:
    data = formats.presentation(
        [
            ("Roadmap", "We ship the harbour release in May.", "Mention the delay risk."),
            ("Budget", "Spending stays flat.", "Ask finance about travel."),
        ],
        table=[["Team", "Heads"], ["Platform", "7"], ["Search", "4"]],
    )
    parsed = await extract(data, filename="deck.bin")
    assert parsed.page_count == 2
    assert "Speaker notes: Mention the delay risk." in parsed.text
    assert "| Team | Heads |\n| --- | --- |\n| Platform | 7 |\n| Search | 4 |" in parsed.text
    chunks = Chunker(ChunkingConfig(max_tokens=200, overlap_tokens=0), words).chunk(parsed)
    by_text = {c.location: c for c in chunks}
    assert set(by_text) == {"slide 1", "slide 2"}
    assert "harbour release" in by_text["slide 1"].text
    assert by_text["slide 1"].heading_path == ("Roadmap",)
    assert "Platform | 7" in by_text["slide 2"].text


async def test_xlsx_rows_come_in_ranges_each_headed_by_the_header_row() -> None:
    rows: list[list[object]] = [["Region", "Month", "Revenue"]]
    rows += [[f"region-{i}", "March", 1000 + i] for i in range(2, 202)]
    data = formats.workbook({"Sales": rows, "Notes": [["Note"], ["Fiscal year ends in June"]]})
    parsed = await extract(data, filename="upload")
    chunks = Chunker(ChunkingConfig(max_tokens=400, overlap_tokens=0), words).chunk(parsed)
    sales = [c for c in chunks if c.heading_path == ("Sheet Sales",)]
    assert len(sales) > 3
    for chunk in sales:
        table = chunk.text.removeprefix("Sheet Sales\n\n")
        assert table.startswith("| Region | Month | Revenue |\n| --- | --- | --- |\n")
        assert chunk.location is not None and chunk.location.startswith("sheet Sales, rows ")
    cell = next(c for c in sales if "| region-150 | March | 1150 |" in c.text)
    assert cell.location is not None
    first, last = _rows(cell.location)
    assert first <= 150 <= last  # region-i is on sheet row i (row 1 is the header)
    notes = next(c for c in chunks if "Fiscal year" in c.text)
    assert notes.location == "sheet Notes, rows 1-2"


def _rows(location: str) -> tuple[int, int]:
    """The first and last row a location names ("sheet S, rows 2-41 – sheet S, rows 42-80")."""
    numbers = [part.rsplit("rows ", 1)[1] for part in location.split(" – ")]
    return int(numbers[0].split("-")[0]), int(numbers[-1].split("-")[1])


async def test_csv_is_recognised_by_content_and_cites_its_rows() -> None:
    data = b"id;name;city\n1;Ada;London\n2;Grace;Arlington\n3;Alan;Wilmslow\n"
    assert sniff(data, filename="export.txt") == "text"  # a name that says text is trusted
    assert sniff(data) == "csv"
    parsed = await extract(data)
    assert parsed.text == (
        "| id | name | city |\n| --- | --- | --- |\n| 1 | Ada | London |\n"
        "| 2 | Grace | Arlington |\n| 3 | Alan | Wilmslow |"
    )
    assert parsed.location(1, 1) == "rows 1-4"


def test_prose_with_commas_is_not_taken_for_csv() -> None:
    prose = b"Well, we left early.\nThen, at noon, it rained.\nStill, we walked on.\n"
    assert sniff(prose) == "text"


async def test_epub_chapters_follow_the_spine_and_cite_their_chapter() -> None:
    data = formats.epub(
        [("The Harbour", "Boats came in at dawn."), ("The Storm", "Wind tore the sails.")]
    )
    assert sniff(data, filename="book.zip") == "epub"
    parsed = await extract(data)
    assert parsed.text.index("Boats came in") < parsed.text.index("Wind tore")
    storm = parsed.text.index("Wind tore")
    page = parsed.page_at(storm)
    assert parsed.location(page, page) == "chapter 2: The Storm"


async def test_odt_headings_paragraphs_and_tables() -> None:
    data = formats.odt("Minutes", "We agreed  to ship.", [["Owner", "Task"], ["Ada", "Ship"]])
    assert sniff(data, filename="minutes.docx") == "odt"
    parsed = await extract(data)
    assert parsed.text.split("\n\n") == [
        "Minutes",
        "We agreed  to ship.",
        "| Owner | Task |\n| --- | --- |\n| Ada | Ship |",
    ]
    assert parsed.spans[0].kind == "heading"


async def test_email_headers_and_body_are_read_and_attachments_set_apart() -> None:
    attachment = ("plan.csv", b"step,owner,when\n1,Ada,May\n2,Alan,June\n", "text/csv")
    data = formats.email(
        "Launch plan",
        "The launch moves to Thursday.",
        html="<p>The launch moves to <b>Thursday</b>.</p>",
        attachment=attachment,
    )
    assert sniff(data, filename="message.txt") == "eml"
    parsed = await extract(data)
    assert "Subject: Launch plan" in parsed.text
    assert "From: Ada <ada@example.com>" in parsed.text
    assert "The launch moves to Thursday." in parsed.text
    assert "Attachment: plan.csv" in parsed.text
    # The attachment is a child document of its own, not part of the message's text.
    assert "| 2 | Alan | June |" not in parsed.text
    (child,) = parsed.attachments
    assert (child.name, child.data) == ("plan.csv", attachment[1])
    assert child.location == "message 1, attachment plan.csv"
    assert parsed.location(1, 1) == "message 1: Launch plan"


async def test_mbox_messages_each_cite_their_message() -> None:
    data = formats.mbox(
        [
            formats.email("First", "From the start, all went well."),
            formats.email("Second", "The second body."),
        ]
    )
    assert sniff(data, filename="archive.txt") == "mbox"
    parsed = await extract(data)
    assert parsed.page_count == 2
    assert "From the start, all went well." in parsed.text  # the escaped ">From" restored
    second = parsed.page_at(parsed.text.index("The second body."))
    assert parsed.location(second, second) == "message 2: Second"


_ZIP_FORMATS = {
    "pptx": lambda: formats.presentation([("t", "b", "n")], [["a"]]),
    "xlsx": lambda: formats.workbook({"S": [["a"]]}),
    "epub": lambda: formats.epub([("t", "x")]),
    "odt": lambda: formats.odt("h", "p", [["a"]]),
}


@pytest.mark.parametrize("kind", sorted(_ZIP_FORMATS))
async def test_every_zip_format_is_refused_when_it_inflates_past_the_limit(kind: str) -> None:
    base = _ZIP_FORMATS[kind]()
    honest = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(base)) as source, zipfile.ZipFile(honest, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info))
        target.writestr("media/big.bin", bytes(3 * 1024 * 1024), zipfile.ZIP_DEFLATED)
    lying = documents.lying_zip_bomb(8 * 1024 * 1024, base=base)
    limits = ParseLimits(max_decompressed_bytes=2 * 1024 * 1024)
    assert sniff(honest.getvalue()) == sniff(lying) == kind
    with pytest.raises(DocumentLimitExceeded, match="expands"):
        await extract(honest.getvalue(), limits=limits)
    with pytest.raises(CorruptDocument, match="CRC"):  # its headers lie: refused as damaged
        await extract(lying, limits=limits)
