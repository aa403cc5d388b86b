"""The context engine's rows in PostgreSQL: collections, documents, uploads and chunks.

Every query is a named query of ``queries.sql``. Tenant scoping happens here: a collection is
always looked up with its tenant, and documents only through their collection.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from propylon.db import vectors
from propylon.db.database import Database
from propylon.rag.bm25 import BM25Index
from propylon.rag.chunking import Chunk
from propylon.rag.queries import QUERIES

Row = dict[str, Any]
Conn = AsyncConnection[DictRow]


@dataclass(frozen=True, slots=True)
class StoredVersion:
    """A parsed, chunked and embedded version of a document, ready to replace the old one."""

    document_id: str
    collection_id: str
    upload_id: str
    sha256: str
    size_bytes: int
    filename: str | None
    media_type: str
    text: str
    page_count: int | None
    chunks: Sequence[Chunk]
    vectors: Sequence[Sequence[float]]
    model_id: str
    weights: str | None
    risks: Sequence[float | None] | None = None  # injection risk per chunk, when screened


@dataclass(frozen=True, slots=True)
class NewChunk:
    """One chunk to store: its document, text and place, and what was computed for it."""

    document_id: str
    chunk: Chunk
    vector: Sequence[float] | None = None
    model_id: str | None = None
    weights: str | None = None
    risk: float | None = None


class CollectionStore:
    def __init__(self, database: Database, bm25: BM25Index) -> None:
        self.database = database
        self.bm25 = bm25

    # Collections --------------------------------------------------------------------------

    async def create_collection(self, values: Row) -> Row | None:
        """The new collection, or ``None`` when the tenant already has one of that name."""
        async with self.database.connection() as conn:
            cur = await conn.execute(QUERIES["collection_insert"], _json(values))
            return await cur.fetchone()

    async def list_collections(self, tenant_id: str) -> list[Row]:
        async with self.database.connection() as conn:
            cur = await conn.execute(QUERIES["collection_list"], {"tenant_id": tenant_id})
            return await cur.fetchall()

    async def get_collection(self, tenant_id: str, ref: str) -> Row | None:
        """By id or by name, within the tenant."""
        async with self.database.connection() as conn:
            cur = await conn.execute(
                QUERIES["collection_get"], {"tenant_id": tenant_id, "ref": ref}
            )
            return await cur.fetchone()

    async def delete_collection(self, tenant_id: str, collection_id: str) -> bool:
        async with self.database.connection() as conn:
            cur = await conn.execute(
                QUERIES["collection_delete"], {"tenant_id": tenant_id, "id": collection_id}
            )
            return await cur.fetchone() is not None

    # Documents ----------------------------------------------------------------------------

    async def lock_collection(self, conn: Conn, collection_id: str) -> None:
        """Serialise uploads to one collection until ``conn``'s transaction ends (dedupe)."""
        await conn.execute(QUERIES["collection_lock"], {"collection_id": collection_id})

    async def lock_document(self, conn: Conn, document_id: str) -> bool:
        """Hold the document against a concurrent delete until ``conn`` 's transaction ends
        (a delete holds it until its own ends); False when it is gone."""
        cur = await conn.execute(QUERIES["document_lock"], {"document_id": document_id})
        return await cur.fetchone() is not None

    async def find_by_sha256(self, conn: Conn, collection_id: str, sha256: str) -> Row | None:
        cur = await conn.execute(
            QUERIES["document_by_sha256"], {"collection_id": collection_id, "sha256": sha256}
        )
        return await cur.fetchone()

    async def find_by_external_id(
        self, conn: Conn, collection_id: str, external_id: str
    ) -> Row | None:
        cur = await conn.execute(
            QUERIES["document_by_external_id"],
            {"collection_id": collection_id, "external_id": external_id},
        )
        return await cur.fetchone()

    async def insert_document(self, conn: Conn, values: Row) -> Row:
        cur = await conn.execute(QUERIES["document_insert"], _json(values))
        row = await cur.fetchone()
        assert row is not None
        return row

    async def insert_upload(self, conn: Conn, values: Row) -> str:
        cur = await conn.execute(QUERIES["upload_insert"], values)
        row = await cur.fetchone()
        assert row is not None
        return str(row["id"])

    async def requeue_document(
        self, conn: Conn, document_id: str, job_id: str, metadata: dict[str, Any] | None
    ) -> Row:
        cur = await conn.execute(
            QUERIES["document_requeue"],
            {
                "document_id": document_id,
                "job_id": job_id,
                "metadata": Jsonb(metadata) if metadata is not None else None,
            },
        )
        row = await cur.fetchone()
        assert row is not None
        return row

    async def list_documents(self, collection_id: str, *, limit: int, offset: int) -> list[Row]:
        async with self.database.connection() as conn:
            cur = await conn.execute(
                QUERIES["document_list"],
                {"collection_id": collection_id, "limit": limit, "offset": offset},
            )
            return await cur.fetchall()

    async def get_document(self, collection_id: str, document_id: str) -> Row | None:
        async with self.database.connection() as conn:
            cur = await conn.execute(
                QUERIES["document_get"],
                {"collection_id": collection_id, "document_id": document_id},
            )
            return await cur.fetchone()

    async def document_text(
        self, collection_id: str, document_id: str, start: int, length: int
    ) -> Row | None:
        async with self.database.connection() as conn:
            cur = await conn.execute(
                QUERIES["document_text"],
                {
                    "collection_id": collection_id,
                    "document_id": document_id,
                    "start": start,
                    "length": length,
                },
            )
            return await cur.fetchone()

    async def delete_document(
        self, collection_id: str, document_id: str, conn: Conn | None = None
    ) -> bool:
        """Delete a document, its chunks and its postings in one transaction (``conn`` 's,
        when given)."""
        if conn is None:
            async with self.database.connection() as own:
                return await self.delete_document(collection_id, document_id, own)
        await conn.execute(QUERIES["document_lock"], {"document_id": document_id})
        await self.bm25.remove_document(conn, collection_id, document_id)
        cur = await conn.execute(
            QUERIES["document_delete"],
            {"collection_id": collection_id, "document_id": document_id},
        )
        return await cur.fetchone() is not None

    # Ingestion ----------------------------------------------------------------------------

    async def load_upload(self, upload_id: str) -> Row | None:
        async with self.database.connection() as conn:
            cur = await conn.execute(QUERIES["upload_load"], {"upload_id": upload_id})
            return await cur.fetchone()

    async def set_status(
        self,
        document_id: str,
        status: str,
        error: str | None = None,
        *,
        fence: Mapping[str, Any],
    ) -> bool:
        """Set the document's status as its job's attempt ``fence`` (``JobContext.fence``);
        False, and nothing written, when the attempt no longer owns the job or the document
        has moved on to another job."""
        async with self.database.connection() as conn:
            cur = await conn.execute(
                QUERIES["document_set_status"],
                {**fence, "document_id": document_id, "status": status, "error": error},
            )
            return await cur.fetchone() is not None

    async def job_ended(self, conn: Conn, job_id: str, status: str, error: str | None) -> None:
        """The reaper requeued or ended ``job_id`` (its worker was lost): its document, unless
        already ready or failed, says so."""
        await conn.execute(
            QUERIES["document_job_ended"], {"job_id": job_id, "status": status, "error": error}
        )

    async def discard_upload(self, upload_id: str) -> None:
        async with self.database.connection() as conn:
            await conn.execute(QUERIES["upload_delete"], {"upload_id": upload_id})

    async def replace_chunks(
        self, version: StoredVersion, on_commit: Callable[[Conn], Awaitable[None]] | None = None
    ) -> bool:
        """Swap the document's chunks for ``version`` 's in one transaction.

        Readers see the old chunks or the new ones, never a mix or none. Returns ``False``
        (writing nothing) when a newer upload of the document is waiting: its own job will
        store it, and this older one must not overwrite it afterwards. ``on_commit`` runs in
        the same transaction (the job queue's ``complete_in``).
        """
        async with self.database.connection() as conn:
            await conn.execute(QUERIES["document_lock"], {"document_id": version.document_id})
            cur = await conn.execute(QUERIES["upload_is_current"], {"upload_id": version.upload_id})
            row = await cur.fetchone()
            if row is None or not row["current"]:
                await conn.execute(QUERIES["upload_delete"], {"upload_id": version.upload_id})
                if on_commit is not None:
                    await on_commit(conn)
                return False
            await self.bm25.remove_document(conn, version.collection_id, version.document_id)
            await conn.execute(
                QUERIES["chunks_delete_document"], {"document_id": version.document_id}
            )
            await self._insert_chunks(conn, version)
            await conn.execute(
                QUERIES["document_mark_ready"],
                {
                    "document_id": version.document_id,
                    "sha256": version.sha256,
                    "text": version.text,
                    "media_type": version.media_type,
                    "filename": version.filename,
                    "size_bytes": version.size_bytes,
                    "page_count": version.page_count,
                    "chunk_count": len(version.chunks),
                },
            )
            await conn.execute(QUERIES["uploads_delete_through"], {"upload_id": version.upload_id})
            await conn.execute(
                QUERIES["collection_set_embedding_identity"],
                {
                    "collection_id": version.collection_id,
                    "model_id": version.model_id,
                    "weights": version.weights,
                },
            )
            if on_commit is not None:
                await on_commit(conn)
            return True

    async def _insert_chunks(self, conn: Conn, version: StoredVersion) -> None:
        risks = version.risks or [None] * len(version.chunks)
        rows = zip(version.chunks, version.vectors, risks, strict=True)
        await self.insert_chunks(
            conn,
            version.collection_id,
            [
                NewChunk(
                    version.document_id, chunk, vector, version.model_id, version.weights, risk
                )
                for chunk, vector, risk in rows
            ],
        )

    async def insert_chunks(
        self, conn: Conn, collection_id: str, chunks: Sequence[NewChunk]
    ) -> list[int]:
        """COPY ``chunks`` into the collection and index them for BM25; their new ids."""
        if not chunks:
            return []
        cur = await conn.execute(QUERIES["chunk_ids_reserve"], {"n": len(chunks)})
        ids = [int(row["id"]) for row in await cur.fetchall()]
        postings: list[tuple[int, Counter[str], int]] = []
        async with conn.cursor().copy(QUERIES["copy_chunks"]) as copy:
            for chunk_id, new in zip(ids, chunks, strict=True):
                chunk = new.chunk
                counts, length = self.bm25.term_counts(chunk.text)
                postings.append((chunk_id, counts, length))
                await copy.write_row(
                    (
                        chunk_id,
                        collection_id,
                        new.document_id,
                        chunk.ordinal,
                        chunk.text,
                        chunk.start,
                        chunk.end,
                        chunk.page,
                        chunk.page_end,
                        list(chunk.heading_path),
                        chunk.token_count,
                        length,
                        vectors.literal(new.vector) if new.vector else None,
                        new.model_id,
                        new.weights,
                        new.risk,
                        list(chunk.page_breaks),
                        chunk.location,
                        chunk.ocr_confidence,
                    )
                )
        await self.bm25.add(conn, collection_id, postings)
        return ids


def _json(values: Row) -> Row:
    return {k: Jsonb(v) if isinstance(v, dict) else v for k, v in values.items()}
