"""The ingestion evaluation scores what it knows: a parse that keeps everything scores 100 %,
and a table flattened to words scores no cells."""

from __future__ import annotations

from propylon.rag import ingestion_eval
from propylon.rag.ingestion_eval import Sample


def words(text: str) -> int:
    return len(text.split())


async def test_the_corpus_without_ocr_is_recalled_whole_with_its_table_cells() -> None:
    kinds = {"pdf-table", "pptx", "xlsx"}
    samples = [s for s in ingestion_eval.build_corpus(scanned_pages=0) if s.kind in kinds]
    rows = {row.kind: row for row in await ingestion_eval.evaluate(samples, words)}
    assert set(rows) == kinds
    assert all(row.text_recall >= 0.98 for row in rows.values())
    assert rows["pdf-table"].cell_recall == rows["xlsx"].cell_recall == 1.0
    assert ingestion_eval.passed(list(rows.values()))


async def test_a_table_that_lost_its_cells_scores_none_of_them() -> None:
    flat = Sample("txt", b"north 12 south 40", "north 12 south 40", ["north", "12"])
    (row,) = await ingestion_eval.evaluate([flat], words)
    assert row.text_recall == 1.0
    assert row.cell_recall == 0.0
