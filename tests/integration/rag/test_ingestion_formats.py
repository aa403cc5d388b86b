"""New formats end to end against PostgreSQL: a presentation, a workbook, an e-book and a
mailbox ingested, and keyword search naming where each hit is (slide, rows, chapter,
message)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from propylon.gateway.protocol import EmbeddingService
from propylon.rag.bm25 import BM25Index
from propylon.rag.search import CollectionRef, SearchRequest, SearchService
from tests.integration.rag.conftest import TENANT, Pipeline
from tests.support import documents, formats


@pytest.fixture
async def collection(pipeline: Pipeline) -> dict[str, Any]:
    return await pipeline.service.create(TENANT, name="formats")


async def ingest(pipeline: Pipeline, content: bytes, filename: str) -> None:
    await pipeline.service.add_document(TENANT, "formats", content=content, filename=filename)
    result = await pipeline.handler(pipeline.jobs.context(pipeline.jobs.jobs[-1]))
    assert result is not None and result["chunks"] >= 1


async def test_search_hits_in_new_formats_say_where_they_are(
    pipeline: Pipeline, collection: dict[str, Any]
) -> None:
    deck = formats.presentation(
        [("Intro", "Welcome everyone.", "Smile."), ("Risks", "The quokka migration slips.", "")],
        table=[["Owner", "Risk"], ["Ada", "late"]],
    )
    rows: list[list[object]] = [["Region", "Revenue"]]
    rows += [[f"r{i}", i] for i in range(2, 60)]
    rows[40] = ["wombatshire", 41]
    book = formats.workbook({"Sales": rows})
    novel = formats.epub([("Dawn", "Boats came in."), ("Dusk", "The platypus sang at night.")])
    mail = formats.mbox(
        [formats.email("Hello", "Nothing here."), formats.email("Numbers", "Echidna count: 12.")]
    )
    for content, name in ((deck, "deck"), (book, "book"), (novel, "novel"), (mail, "mail")):
        await ingest(pipeline, content, name)
    search = SearchService(
        pipeline.database, cast(EmbeddingService, None), BM25Index()
    )  # keyword mode: no embeddings asked for
    ref = CollectionRef(str(collection["id"]), "formats", "embed-test")

    async def where(word: str) -> str | None:
        hits = await search.search_collections(
            None, [ref], SearchRequest(word, top_k=1, mode="keyword")
        )
        assert hits and word in hits[0].text.lower()
        location: str | None = hits[0].to_json()["location"]
        return location

    assert await where("quokka") == "slide 2"
    wombat = await where("wombatshire")
    assert wombat is not None and wombat.startswith("sheet Sales, rows ")
    assert await where("platypus") == "chapter 2: Dusk"
    assert await where("echidna") == "message 2: Numbers"


async def test_a_scanned_pages_sentence_is_found_by_search_and_marked_as_ocr(
    pipeline: Pipeline, collection: dict[str, Any]
) -> None:
    sentence = "The lighthouse keeper logged nineteen gannets before breakfast."
    await ingest(pipeline, documents.scanned_pdf([[sentence]]), "scan")
    search = SearchService(pipeline.database, cast(EmbeddingService, None), BM25Index())
    ref = CollectionRef(str(collection["id"]), "formats", "embed-test")
    hits = await search.search_collections(
        None, [ref], SearchRequest("lighthouse keeper gannets", top_k=1, mode="keyword")
    )
    assert hits and "nineteen gannets" in hits[0].text
    found = hits[0].to_json()
    assert found["ocr"] is True and 0.8 <= found["ocr_confidence"] <= 1.0
    assert found["page"] == 1
