"""Text extraction from real files: reading order, pages, running heads, structure, failures."""

from __future__ import annotations

import asyncio
import io
import zipfile

import pytest

from propylon.rag.errors import (
    CorruptDocument,
    DocumentLimitExceeded,
    EmptyDocument,
    EncryptedDocument,
    UnsupportedDocument,
)
from propylon.rag.parsing import ParseLimits, extract, sniff
from tests.support import documents


async def test_two_column_pdf_comes_out_in_reading_order() -> None:
    left = ["The left column starts here", "and carries on down", "to its own end."]
    right = ["Then the right column", "follows it in order."]
    parsed = await extract(documents.two_column_pdf(left, right))
    text = " ".join(parsed.text.split())
    assert text == " ".join(left + right)
    assert parsed.page_count == 1
    assert parsed.media_type == "application/pdf"


async def test_pdf_pages_are_kept_and_running_heads_dropped() -> None:
    pages = [[f"The body text of this page mentions topic{n} once."] for n in range(1, 5)]
    data = documents.pdf(pages, header="ACME Journal of Examples", footer_page_numbers=True)
    parsed = await extract(data)
    assert "ACME Journal" not in parsed.text
    assert "Page 1 of 4" not in parsed.text
    assert parsed.page_count == 4
    for n in range(1, 5):
        offset = parsed.text.index(f"topic{n}")
        assert parsed.page_at(offset) == n


async def test_pdf_words_hyphenated_across_lines_come_back_whole() -> None:
    parsed = await extract(documents.pdf([["a hyphen-", "ated word"]]))
    assert "hyphenated word" in parsed.text


async def test_pdf_parse_reports_its_pages_in_order_up_to_the_last() -> None:
    """The parsing process reports a page a few times a second at most (each is a progress
    write), always the first and the last."""
    seen: list[tuple[int, int | None]] = []

    async def on_page(number: int, total: int | None) -> None:
        seen.append((number, total))

    await extract(documents.pdf([["one"], ["two"], ["three"]]), on_page=on_page)
    assert seen[0] == (1, 3) and seen[-1] == (3, 3)
    assert seen == sorted(seen)


async def test_docx_tables_stay_in_place_and_headings_are_kept() -> None:
    parsed = await extract(documents.docx_with_table(), filename="report.docx")
    assert parsed.text.split("\n\n") == [
        "Quarterly report",
        "Revenue grew in every region this quarter.",
        "| Region | Revenue |\n| --- | --- |\n| North | 120 |\n| South | 95 |",
        "Outlook",
        "We expect steady growth next year.",
    ]
    kinds = [(span.kind, span.level) for span in parsed.spans]
    assert kinds == [
        ("heading", 1),
        ("paragraph", 0),
        ("table", 0),
        ("heading", 2),
        ("paragraph", 0),
    ]
    assert parsed.page_count is None


async def test_html_keeps_structure_and_drops_scripts_and_navigation() -> None:
    html = b"""<!doctype html><html><head><title>t</title><style>p{}</style></head><body>
    <nav><a href="/">Home</a></nav><h1>Guide</h1><p>First <b>bold</b> point.</p>
    <script>alert(1)</script><ul><li>item one</li><li>item two</li></ul>
    <table><tr><th>k</th><th>v</th></tr><tr><td>a</td><td>1</td></tr></table>
    <footer>Copyright</footer></body></html>"""
    parsed = await extract(html)
    assert parsed.text.split("\n\n") == [
        "Guide",
        "First bold point.",
        "item one",
        "item two",
        "| k | v |\n| --- | --- |\n| a | 1 |",
    ]
    assert parsed.spans[0].kind == "heading"


async def test_markdown_headings_and_code_blocks() -> None:
    source = b"# Title\n\nIntro text.\n\n## Part\n\n```\ncode here\n```\n\nMore text\nwrapped.\n"
    parsed = await extract(source, filename="notes.md")
    assert parsed.text.split("\n\n") == [
        "Title",
        "Intro text.",
        "Part",
        "```\ncode here\n```",
        "More text\nwrapped.",
    ]
    assert [(s.kind, s.level) for s in parsed.spans][:3] == [
        ("heading", 1),
        ("paragraph", 0),
        ("heading", 2),
    ]


async def test_plain_text_is_nfkc_normalised() -> None:
    parsed = await extract("ﬁnance ①\r\n\r\nsecond".encode())
    assert parsed.text == "finance 1\n\nsecond"


def test_format_is_sniffed_from_content_not_the_name() -> None:
    assert sniff(documents.pdf([["x"]]), filename="misnamed.txt") == "pdf"
    assert sniff(documents.docx_with_table(), filename="report.bin") == "docx"
    assert sniff(b"<html><body><p>x</p></body></html>", filename="page.txt") == "html"
    assert sniff(b"just words", filename=None) == "text"


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"", EmptyDocument, "empty"),
        (b"   \n\n  ", EmptyDocument, "No text"),
        (b"%PDF-1.7\n this is not really a pdf", CorruptDocument, "damaged"),
        (b"GIF89a" + b"\x00" * 64, UnsupportedDocument, "GIF"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, CorruptDocument, "image is damaged"),
        (b"\x00\x01\x02binary", UnsupportedDocument, "binary"),
        (b"PK\x03\x04 broken zip", CorruptDocument, "damaged"),
    ],
)
async def test_unreadable_files_fail_with_a_reason(
    data: bytes, error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words):
        await extract(data)


async def test_encrypted_pdf_is_refused_with_a_reason() -> None:
    with pytest.raises(EncryptedDocument, match="encrypted"):
        await extract(documents.encrypted(documents.pdf([["secret text"]])))


async def test_pdf_without_text_is_an_empty_parse_error() -> None:
    with pytest.raises(EmptyDocument, match="PDF"):
        await extract(documents.pdf([[], []]))


async def test_page_limit() -> None:
    data = documents.pdf([["a"], ["b"], ["c"]])
    with pytest.raises(DocumentLimitExceeded, match="3 pages"):
        await extract(data, limits=ParseLimits(max_pages=2))


async def test_docx_zip_bomb_is_refused_before_inflating() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("word/document.xml", b"<a>" + b" " * 5_000_000 + b"</a>")
    with pytest.raises(DocumentLimitExceeded, match="expands"):
        await extract(buffer.getvalue(), limits=ParseLimits(max_decompressed_bytes=1_000_000))


async def test_a_parse_that_hangs_is_killed_at_its_time_limit() -> None:
    """200,000 nested `<div>`: minutes inside one lexbor call, which no check between items
    can interrupt; the parsing process is killed instead, and the caller's loop ran on."""
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        with pytest.raises(DocumentLimitExceeded, match="longer than the limit of 1 s"):
            await extract(documents.nested_html(200_000), limits=ParseLimits(parse_timeout_s=1))
    finally:
        ticker.cancel()
    assert ticks >= 10  # the event loop was never blocked (3 s at 50 ms a tick: ~60)


async def test_a_zip_bomb_lying_about_its_size_is_refused_without_inflating_it() -> None:
    with pytest.raises(CorruptDocument, match="Bad CRC-32"):
        await extract(documents.lying_zip_bomb(64 * 1024 * 1024), filename="bomb.docx")


async def test_a_parse_over_its_memory_limit_fails_with_the_reason() -> None:
    data = documents.docx_of_tiny_paragraphs(60 * 1024 * 1024)
    limits = ParseLimits(max_memory_bytes=512 * 1024 * 1024)
    with pytest.raises(DocumentLimitExceeded, match="more memory than the limit of 512 MB"):
        await extract(data, filename="paragraphs.docx", limits=limits)


async def test_pdf_tables_become_markdown_tables_in_their_place() -> None:
    rows = [["Region", "Q1", "Q2"], ["North", "120", "130"], ["South", "95", "99"]]
    data = documents.pdf_with_table("Revenue by region follows.", rows, "That ends the table.")
    parsed = await extract(data)
    assert parsed.text.split("\n\n") == [
        "Revenue by region follows.",
        "| Region | Q1 | Q2 |\n| --- | --- | --- |\n| North | 120 | 130 |\n| South | 95 | 99 |",
        "That ends the table.",
    ]
    assert [span.kind for span in parsed.spans] == ["paragraph", "table", "paragraph"]


async def test_a_table_header_on_every_page_is_not_taken_for_a_running_head() -> None:
    rows = [["Item", "Count"], ["bolts", "12"]]
    parsed = await extract(documents.pdf_with_table("Stock list.", rows, "End.", pages=3))
    assert parsed.text.count("| Item | Count |") == 3
    assert [span.kind for span in parsed.spans] == ["table"] * 3  # the repeated lines went


async def test_markdown_pipe_tables_are_tables() -> None:
    source = b"# Prices\n\n| item | price |\n| --- | --- |\n| tea | 3 |\n\nThat is all.\n"
    parsed = await extract(source, filename="prices.md")
    assert [span.kind for span in parsed.spans] == ["heading", "table", "paragraph"]
