"""The ingestion evaluation scores what it knows: a parse that keeps everything scores 100 %,
a table flattened to words scores no cells, and its questions are answered by keyword search
itself (PostgreSQL BM25, in a throw-away collection deleted afterwards)."""

from __future__ import annotations

from propylon.db.database import Database
from propylon.rag import ingestion_eval
from propylon.rag.ingestion_eval import Sample


def words(text: str) -> int:
    return len(text.split())


async def test_the_corpus_without_ocr_is_recalled_whole_with_its_table_cells(
    database: Database,
) -> None:
    kinds = {"pdf-table", "pptx", "xlsx"}
    samples = [s for s in ingestion_eval.build_corpus(scanned_pages=0) if s.kind in kinds]
    rows = {row.kind: row for row in await ingestion_eval.evaluate(samples, words, database)}
    assert set(rows) == kinds
    assert all(row.text_recall >= 0.98 for row in rows.values())
    assert rows["pdf-table"].cell_recall == rows["xlsx"].cell_recall == 1.0
    assert ingestion_eval.passed(list(rows.values()))


async def test_a_table_that_lost_its_cells_scores_none_of_them(database: Database) -> None:
    flat = Sample("txt", b"north 12 south 40", "north 12 south 40", ["north", "12"])
    (row,) = await ingestion_eval.evaluate([flat], words, database)
    assert row.text_recall == 1.0
    assert row.cell_recall == 0.0


async def test_questions_find_their_document_unless_parsing_lost_its_words(
    database: Database,
) -> None:
    harbour = "the harbour lantern burned all night while ships waited for the morning tide"
    garden = "a quiet garden behind the village school grew yellow roses every summer"
    market = "traders at the market counted silver coins beside the old stone bridge"
    samples = [
        Sample("kept", harbour.encode(), harbour),
        Sample("kept", garden.encode(), garden),
        # Its bytes lost what it is known to say (a page OCR could not read, say).
        Sample("lost", b"illegible smudge", market),
    ]
    rows = {row.kind: row for row in await ingestion_eval.evaluate(samples, words, database)}
    assert rows["kept"].questions == 2 * ingestion_eval.QUESTIONS_PER_DOCUMENT
    assert rows["kept"].ndcg == 1.0
    assert rows["lost"].ndcg == 0.0
    async with database.connection() as conn:
        left = await (await conn.execute("SELECT count(*) AS n FROM collections")).fetchone()
    assert left is not None and left["n"] == 0  # the throw-away collection is gone
