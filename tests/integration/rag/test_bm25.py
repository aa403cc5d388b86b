"""BM25 in PostgreSQL scores like Lucene, and ranks SciFact as ``bm25s`` does."""

from __future__ import annotations

import bm25s
import pytest
import Stemmer

from propylon.db.database import Database
from propylon.rag.bm25 import Analyzer, BM25Index
from propylon.rag.bm25_eval import evaluate_bm25, index_corpus, load_beir
from propylon.rag.store import CollectionStore
from tests.support.shared_data import SHARED_DATA

SCIFACT = SHARED_DATA / "scifact"

TINY_CORPUS = {
    "d1": "The quick brown fox jumps over the lazy dog.",
    "d2": "Foxes are quick; dogs are lazy. Quick foxes hunt at night.",
    "d3": "Stock markets jumped as investors bought shares.",
    "d4": "A dog barks. Another dog barks back at the first dog.",
}


def test_analyzer_stems_and_drops_stop_words_like_bm25s() -> None:
    text = "The running dogs were jumping over these fences, and a fox is running."
    expected = bm25s.tokenize(
        [text], stopwords="en", stemmer=Stemmer.Stemmer("english"), return_ids=False
    )
    assert Analyzer().terms(text) == expected[0]


async def test_scores_equal_bm25s_lucene_scores(database: Database) -> None:
    store = CollectionStore(database, BM25Index())
    created = await store.create_collection(
        {
            "tenant_id": "00000000-0000-0000-0000-000000000000",
            "name": "tiny",
            "description": "",
            "chunking": {},
            "embedding_model": "none",
            "metadata": {},
        }
    )
    assert created is not None
    chunk_to_doc = await index_corpus(store, str(created["id"]), TINY_CORPUS)
    async with database.connection() as conn:
        hits = await store.bm25.search(conn, str(created["id"]), "quick dog jumping")
    ours = {chunk_to_doc[hit.chunk_id]: hit.score for hit in hits}

    stemmer = Stemmer.Stemmer("english")
    retriever = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
    retriever.index(
        bm25s.tokenize(list(TINY_CORPUS.values()), stopwords="en", stemmer=stemmer),
        show_progress=False,
    )
    (query,) = bm25s.tokenize(
        ["quick dog jumping"], stopwords="en", stemmer=stemmer, return_ids=False
    )
    theirs = retriever.get_scores(query)
    expected = {doc: float(s) for doc, s in zip(TINY_CORPUS, theirs, strict=True) if s > 0}
    assert ours == pytest.approx(expected, rel=1e-6)
    assert [chunk_to_doc[hit.chunk_id] for hit in hits] == sorted(
        expected, key=lambda doc: -expected[doc]
    )


@pytest.mark.skipif(not SCIFACT.is_dir(), reason=f"SciFact not found at {SCIFACT}")
async def test_ndcg_at_10_matches_bm25s_on_a_scifact_subset(database: Database) -> None:
    """The full corpus runs in `propylon eval bm25` (see docs/benchmarks.md)."""
    data = load_beir(SCIFACT, max_documents=1500)
    report = await evaluate_bm25(database, data)
    assert report.bm25s_ndcg_at_10 is not None
    assert report.queries == 300
    assert abs(report.ndcg_at_10 - report.bm25s_ndcg_at_10) <= 0.01
    assert report.ndcg_at_10 > 0.6
