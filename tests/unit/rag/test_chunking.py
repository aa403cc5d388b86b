"""Chunking: budgets, overlap, heading paths, and offsets that point at the chunk's text."""

from __future__ import annotations

import pytest

from propylon.rag.chunking import Chunker, ChunkingConfig
from propylon.rag.parsing.document import Block, DocumentBuilder, PageBreak, ParsedDocument


def words(text: str) -> int:
    return len(text.split())


def build(*items: Block | PageBreak) -> ParsedDocument:
    builder = DocumentBuilder("text/plain", max_chars=10**7)
    for item in items:
        if isinstance(item, PageBreak):
            builder.page(item.number)
        else:
            builder.add(item)
    return builder.build()


def test_every_chunk_is_the_slice_its_offsets_name() -> None:
    paragraphs = [Block("paragraph", f"Sentence {i} of the text. " * 12) for i in range(10)]
    document = build(*paragraphs)
    chunks = Chunker(ChunkingConfig(max_tokens=40, overlap_tokens=8), words).chunk(document)
    assert len(chunks) > 5
    for chunk in chunks:
        assert document.text[chunk.start : chunk.end] == chunk.text
        assert chunk.token_count <= 40 + 5  # separators between units cost a little
    assert [c.ordinal for c in chunks] == list(range(len(chunks)))


def test_small_sections_stay_whole_and_carry_their_heading_path() -> None:
    document = build(
        Block("heading", "Guide", 1),
        Block("paragraph", "Intro to the guide."),
        Block("heading", "Install", 2),
        Block("paragraph", "Run the installer."),
        Block("heading", "Linux", 3),
        Block("paragraph", "Use the package."),
        Block("heading", "Usage", 2),
        Block("paragraph", "Call it."),
    )
    chunks = Chunker(ChunkingConfig(max_tokens=50, overlap_tokens=0), words).chunk(document)
    assert [(c.text, c.heading_path) for c in chunks] == [
        ("Guide\n\nIntro to the guide.", ("Guide",)),
        ("Install\n\nRun the installer.", ("Guide", "Install")),
        ("Linux\n\nUse the package.", ("Guide", "Install", "Linux")),
        ("Usage\n\nCall it.", ("Guide", "Usage")),
    ]


def test_a_heading_without_text_joins_the_section_after_it() -> None:
    document = build(
        Block("heading", "Part one", 1),
        Block("heading", "Chapter", 2),
        Block("paragraph", "Body."),
    )
    (chunk,) = Chunker(ChunkingConfig(max_tokens=50, overlap_tokens=0), words).chunk(document)
    assert chunk.text == "Part one\n\nChapter\n\nBody."
    assert chunk.heading_path == ("Part one", "Chapter")


def test_long_paragraphs_split_at_sentences_with_overlap() -> None:
    sentences = [f"Claim number {i} holds true here." for i in range(12)]  # 6 words each
    document = build(Block("paragraph", " ".join(sentences)))
    chunks = Chunker(ChunkingConfig(max_tokens=20, overlap_tokens=6), words).chunk(document)
    assert chunks[0].text == " ".join(sentences[:3])
    assert chunks[1].text.startswith(sentences[2])  # one sentence of overlap
    assert chunks[-1].text.endswith(sentences[-1])
    for chunk in chunks:
        assert not chunk.text.startswith(" ") and chunk.text.endswith(".")


def test_a_sentence_longer_than_the_budget_is_cut_at_words() -> None:
    document = build(Block("paragraph", " ".join(f"w{i}" for i in range(100))))
    chunks = Chunker(ChunkingConfig(max_tokens=16, overlap_tokens=0), words).chunk(document)
    assert len(chunks) >= 7
    assert " ".join(c.text for c in chunks).split() == [f"w{i}" for i in range(100)]


def test_chunks_know_their_pages() -> None:
    document = build(
        PageBreak(1),
        Block("paragraph", "alpha " * 30),
        PageBreak(2),
        Block("paragraph", "beta " * 30),
        PageBreak(3),
        Block("paragraph", "gamma " * 30),
    )
    chunks = Chunker(ChunkingConfig(max_tokens=35, overlap_tokens=0), words).chunk(document)
    assert [(c.text.split()[0], c.page, c.page_end) for c in chunks] == [
        ("alpha", 1, 1),
        ("beta", 2, 2),
        ("gamma", 3, 3),
    ]


def test_a_chunk_spanning_pages_records_both() -> None:
    document = build(
        PageBreak(1), Block("paragraph", "one two"), PageBreak(2), Block("paragraph", "three")
    )
    (chunk,) = Chunker(ChunkingConfig(max_tokens=50, overlap_tokens=0), words).chunk(document)
    assert (chunk.page, chunk.page_end) == (1, 2)


@pytest.mark.parametrize(("max_tokens", "overlap"), [(8, 0), (100, 80), (100, -1)])
def test_invalid_configs_are_refused(max_tokens: int, overlap: int) -> None:
    with pytest.raises(ValueError, match="tokens"):
        ChunkingConfig(max_tokens=max_tokens, overlap_tokens=overlap)


def test_a_table_too_big_for_one_chunk_is_cut_between_rows_only() -> None:
    rows = "\n".join(f"| item {i} | alpha beta gamma | {i * 7} |" for i in range(60))
    table = "| name | words | value |\n| --- | --- | --- |\n" + rows
    document = build(Block("paragraph", "The inventory follows."), Block("table", table))
    chunks = Chunker(ChunkingConfig(max_tokens=40, overlap_tokens=0), words).chunk(document)
    table_chunks = [c for c in chunks if "| item" in c.text]
    assert len(table_chunks) > 3
    for chunk in table_chunks:
        for line in chunk.text.split("\n"):
            if line.startswith("| item"):
                assert line.endswith("|") and line.count("|") == 4  # whole rows only
