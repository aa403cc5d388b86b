"""Ingestion end to end against PostgreSQL: real files in, searchable chunks out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from propylon.errors import NotFound, RequestTooLarge, UpstreamError
from propylon.rag.errors import DocumentRejected
from tests.integration.rag.conftest import OTHER_TENANT, TENANT, Pipeline
from tests.support import documents
from tests.support.ingestion import FakeJobContext


async def ingest(
    pipeline: Pipeline, content: bytes, *, collection: str = "docs", **kwargs: Any
) -> tuple[str, FakeJobContext, dict[str, Any] | None]:
    accepted = await pipeline.service.add_document(TENANT, collection, content=content, **kwargs)
    assert not accepted.duplicate
    ctx = pipeline.jobs.context(pipeline.jobs.jobs[-1])
    result = await pipeline.handler(ctx)
    return str(accepted.document["id"]), ctx, result


async def chunk_rows(pipeline: Pipeline, document_id: str) -> list[dict[str, Any]]:
    async with pipeline.database.connection() as conn:
        cur = await conn.execute(
            "SELECT c.*, d.text AS document_text, c.embedding IS NOT NULL AS embedded"
            " FROM chunks c JOIN documents d ON d.id = c.document_id"
            " WHERE c.document_id = %s ORDER BY c.ordinal",
            (document_id,),
        )
        return await cur.fetchall()


async def bm25_consistent(pipeline: Pipeline, collection_id: str) -> None:
    async with pipeline.database.connection() as conn:
        cur = await conn.execute(
            "SELECT s.chunk_count, s.term_total,"
            " (SELECT count(*) FROM chunks WHERE collection_id = s.collection_id) AS n,"
            " (SELECT coalesce(sum(term_count), 0) FROM chunks"
            "   WHERE collection_id = s.collection_id) AS total"
            " FROM bm25_stats s WHERE s.collection_id = %s",
            (collection_id,),
        )
        row = await cur.fetchone()
    assert row is not None
    assert (row["chunk_count"], row["term_total"]) == (row["n"], row["total"])


@pytest.fixture
async def collection(pipeline: Pipeline) -> dict[str, Any]:
    return await pipeline.service.create(TENANT, name="docs")


async def test_a_pdf_becomes_chunks_with_offsets_pages_and_vectors(
    pipeline: Pipeline, collection: dict[str, Any]
) -> None:
    pages = [
        [f"Page {n} discusses the {topic} in some detail.", "It has a second sentence too."]
        for n, topic in enumerate(["aurora", "glacier", "volcano"], start=1)
    ]
    document_id, ctx, result = await ingest(
        pipeline, documents.pdf(pages), filename="report.pdf", metadata={"team": "geo"}
    )
    assert result is not None and result["pages"] == 3
    assert ctx.stages == ["parsing", "chunking", "embedding", "storing"]
    assert ctx.completed == [result]
    rows = await chunk_rows(pipeline, document_id)
    assert len(rows) == result["chunks"] >= 1
    for row in rows:
        assert row["document_text"][row["char_start"] : row["char_end"]] == row["text"]
        assert row["embedded"]
        assert (row["embedding_model"], row["embedding_weights"]) == ("hash-384", "w-embed-test")
    for n, topic in enumerate(["aurora", "glacier", "volcano"], start=1):
        (row,) = [r for r in rows if topic in r["text"]]
        offset = row["document_text"].index(topic)
        assert row["page"] <= n <= row["page_end"]
        assert row["char_start"] <= offset < row["char_end"]
    document = await pipeline.service.get_document(TENANT, "docs", document_id)
    assert document["status"] == "ready"
    assert document["page_count"] == 3
    assert document["metadata"] == {"team": "geo"}
    assert document["media_type"] == "application/pdf"
    refreshed = await pipeline.service.get(TENANT, "docs")
    assert (refreshed["embedding_model_id"], refreshed["embedding_weights"]) == (
        "hash-384",
        "w-embed-test",
    )
    await bm25_consistent(pipeline, str(collection["id"]))


async def test_keyword_search_finds_the_chunk(
    pipeline: Pipeline, collection: dict[str, Any]
) -> None:
    await ingest(pipeline, b"Cats purr when content.\n\nDogs bark at strangers.", filename="a.txt")
    await ingest(pipeline, b"Parrots mimic human speech.", filename="b.txt")
    async with pipeline.database.connection() as conn:
        hits = await pipeline.store.bm25.search(conn, str(collection["id"]), "barking dogs")
        cur = await conn.execute("SELECT text FROM chunks WHERE id = %s", (hits[0].chunk_id,))
        row = await cur.fetchone()
    assert row is not None and "Dogs bark" in row["text"]
    assert len(hits) == 1


async def test_identical_bytes_uploaded_again_are_a_no_op(
    pipeline: Pipeline, collection: dict[str, Any]
) -> None:
    content = documents.docx_with_table()
    document_id, _, _ = await ingest(pipeline, content, filename="report.docx")
    again = await pipeline.service.add_document(
        TENANT, "docs", content=content, filename="copy.docx"
    )
    assert again.duplicate
    assert str(again.document["id"]) == document_id
    assert len(pipeline.jobs.jobs) == 1  # nothing enqueued
    listed = await pipeline.service.list_documents(TENANT, "docs")
    assert len(listed) == 1


async def test_same_bytes_while_the_first_upload_is_pending_return_its_job(
    pipeline: Pipeline, collection: dict[str, Any]
) -> None:
    first = await pipeline.service.add_document(TENANT, "docs", content=b"pending text")
    second = await pipeline.service.add_document(TENANT, "docs", content=b"pending text")
    assert second.duplicate and second.job_id == first.job_id
    assert second.document["id"] == first.document["id"]


async def test_changed_bytes_under_the_same_external_id_replace_chunks_atomically(
    pipeline: Pipeline, collection: dict[str, Any]
) -> None:
    old = "\n\n".join(f"Old paragraph {i} about apples and pears." for i in range(30)).encode()
    new = "\n\n".join(f"New paragraph {i} about rockets." for i in range(20)).encode()
    document_id, _, _ = await ingest(pipeline, old, external_id="handbook")
    old_texts = [r["text"] for r in await chunk_rows(pipeline, document_id)]

    accepted = await pipeline.service.add_document(
        TENANT, "docs", content=new, external_id="handbook"
    )
    assert str(accepted.document["id"]) == document_id and not accepted.duplicate
    pipeline.embeddings.delay_s = 0.02  # widen the window in which a reader could see a mix
    seen: list[list[str]] = []
    done = asyncio.Event()

    async def reader() -> None:
        while not done.is_set():
            seen.append([r["text"] for r in await chunk_rows(pipeline, document_id)])
            await asyncio.sleep(0.005)

    watcher = asyncio.create_task(reader())
    await pipeline.handler(pipeline.jobs.context(pipeline.jobs.jobs[-1]))
    done.set()
    await watcher
    new_texts = [r["text"] for r in await chunk_rows(pipeline, document_id)]
    assert new_texts and new_texts != old_texts
    assert all("rockets" in text for text in new_texts)
    assert len(seen) > 3
    assert all(view in (old_texts, new_texts) for view in seen)
    assert len(await pipeline.service.list_documents(TENANT, "docs")) == 1
    await bm25_consistent(pipeline, str(collection["id"]))


async def test_an_older_upload_finishing_last_does_not_overwrite_a_newer_one(
    pipeline: Pipeline, collection: dict[str, Any]
) -> None:
    await pipeline.service.add_document(TENANT, "docs", content=b"version two", external_id="x")
    await pipeline.service.add_document(TENANT, "docs", content=b"version three", external_id="x")
    older, newer = pipeline.jobs.jobs
    await pipeline.handler(pipeline.jobs.context(newer))
    result = await pipeline.handler(pipeline.jobs.context(older))
    assert result is not None and result["skipped"] == "superseded"
    (document,) = await pipeline.service.list_documents(TENANT, "docs")
    assert [r["text"] for r in await chunk_rows(pipeline, str(document["id"]))] == ["version three"]


@pytest.mark.parametrize(
    ("content", "code", "words"),
    [
        (b"%PDF-1.4\n%%garbage that is no pdf", "corrupt_document", "damaged"),
        (b"GIF89a" + b"\x00" * 32, "unsupported_document", "GIF"),
        (b" \n\n \t ", "empty_document", "No text"),
        (None, "encrypted_document", "encrypted"),
    ],
)
async def test_unreadable_documents_fail_their_job_with_a_reason(
    pipeline: Pipeline, collection: dict[str, Any], content: bytes | None, code: str, words: str
) -> None:
    data = content or documents.encrypted(documents.pdf([["classified"]]))
    accepted = await pipeline.service.add_document(TENANT, "docs", content=data)
    ctx = pipeline.jobs.context(pipeline.jobs.jobs[-1])
    with pytest.raises(DocumentRejected, match=words) as caught:
        await pipeline.handler(ctx)
    assert caught.value.code == code
    assert not caught.value.retryable
    assert ctx.completed == []
    document = await pipeline.service.get_document(TENANT, "docs", str(accepted.document["id"]))
    assert document["status"] == "failed"
    assert words in document["error"]
    assert await chunk_rows(pipeline, str(accepted.document["id"])) == []


async def test_a_failed_document_uploaded_again_is_retried(
    pipeline: Pipeline, collection: dict[str, Any]
) -> None:
    pipeline.embeddings.fail_with = UpstreamError("embeddings upstream down")
    accepted = await pipeline.service.add_document(TENANT, "docs", content=b"some text")
    job = pipeline.jobs.jobs[-1]
    with pytest.raises(UpstreamError):
        await pipeline.handler(pipeline.jobs.context(job, attempt=1))
    document_id = str(accepted.document["id"])
    document = await pipeline.service.get_document(TENANT, "docs", document_id)
    assert document["status"] == "queued" and "retrying" in document["error"]
    with pytest.raises(UpstreamError):
        await pipeline.handler(pipeline.jobs.context(job, attempt=3))
    document = await pipeline.service.get_document(TENANT, "docs", document_id)
    assert document["status"] == "failed"

    pipeline.embeddings.fail_with = None
    again = await pipeline.service.add_document(TENANT, "docs", content=b"some text")
    assert not again.duplicate and str(again.document["id"]) == document_id
    await pipeline.handler(pipeline.jobs.context(pipeline.jobs.jobs[-1]))
    document = await pipeline.service.get_document(TENANT, "docs", document_id)
    assert document["status"] == "ready" and document["error"] is None


async def test_uploads_over_the_size_limit_are_refused(
    pipeline: Pipeline, collection: dict[str, Any]
) -> None:
    with pytest.raises(RequestTooLarge):
        await pipeline.service.add_document(TENANT, "docs", content=b"x" * 1_000_001)


async def test_deleting_a_document_removes_its_chunks_and_statistics(
    pipeline: Pipeline, collection: dict[str, Any]
) -> None:
    keep, _, _ = await ingest(pipeline, b"keep this text about owls")
    gone, _, _ = await ingest(pipeline, b"delete this text about bats")
    await pipeline.service.delete_document(TENANT, "docs", gone)
    assert await chunk_rows(pipeline, gone) == []
    assert len(await chunk_rows(pipeline, keep)) == 1
    await bm25_consistent(pipeline, str(collection["id"]))
    with pytest.raises(NotFound):
        await pipeline.service.get_document(TENANT, "docs", gone)


async def test_another_tenants_collection_is_not_found(
    pipeline: Pipeline, collection: dict[str, Any]
) -> None:
    with pytest.raises(NotFound):
        await pipeline.service.get(OTHER_TENANT, str(collection["id"]))
    with pytest.raises(NotFound):
        await pipeline.service.add_document(OTHER_TENANT, "docs", content=b"sneaky")
    assert await pipeline.service.list_all(OTHER_TENANT) == []


async def test_embeddings_are_batched_and_charged_to_the_tenant(
    pipeline: Pipeline, collection: dict[str, Any]
) -> None:
    text = "\n\n".join(f"Paragraph {i} " + "word " * 30 for i in range(10))
    _, ctx, result = await ingest(pipeline, text.encode())
    assert result is not None and result["chunks"] == 10
    assert [len(texts) for texts, _, _ in pipeline.embeddings.calls] == [4, 4, 2]
    for _, request, call in pipeline.embeddings.calls:
        assert request == {"model": "embed-test"}
        assert call is not None and call.principal is not None
        assert call.principal.tenant_id == TENANT
    embedding_events = [counters for stage, _, counters in ctx.events if stage == "embedding"]
    assert embedding_events[-1] == {"chunks": 10, "of": 10}


async def test_an_emails_attachment_becomes_a_child_document_citing_its_message(
    pipeline: Pipeline, collection: dict[str, Any]
) -> None:
    from propylon.rag.ingest import IngestionHandler
    from tests.integration.rag.conftest import count_words
    from tests.support import formats

    handler = IngestionHandler(
        pipeline.store,
        pipeline.handler._embedder,
        count_words,
        children=pipeline.service.add_attachments,
    )
    csv = b"step,owner,when\n1,Ada,May\n2,Alan,June\n"
    mail = formats.email(
        "Launch plan", "The plan is attached.", attachment=("plan.csv", csv, "text/csv")
    )
    accepted = await pipeline.service.add_document(TENANT, "docs", content=mail, filename="m.eml")
    result = await handler(pipeline.jobs.context(pipeline.jobs.jobs[-1]))
    assert result is not None and result["attachments"] == 1
    child_job = pipeline.jobs.jobs[-1]
    assert child_job.payload["document_id"] != str(accepted.document["id"])
    await handler(pipeline.jobs.context(child_job))

    parent_id = str(accepted.document["id"])
    child = await pipeline.service.get_document(TENANT, "docs", child_job.payload["document_id"])
    assert child["status"] == "ready" and child["filename"] == "plan.csv"
    assert child["metadata"] == {
        "parent_id": parent_id,
        "location": "message 1, attachment plan.csv",
    }
    assert child["external_id"] == f"{parent_id}/attachment/1"
    rows = await chunk_rows(pipeline, str(child["id"]))
    assert any("| 2 | Alan | June |" in row["text"] for row in rows)
    # The same message again: nothing new (the child's bytes are in already).
    again = await pipeline.service.add_document(TENANT, "docs", content=mail, filename="m.eml")
    assert again.duplicate
