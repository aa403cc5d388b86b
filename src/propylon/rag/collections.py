"""Collections and their documents, per tenant: the service the HTTP routes and the CLI call.

Uploading is where duplicates are stopped. Under a per-collection lock, the sha256 of the
bytes is looked up: the same bytes again return the existing document and enqueue nothing;
new bytes under a known ``external_id`` become a new version of that document (its chunks are
replaced atomically when the job stores them); anything else is a new document. The upload
row and its job are written in one transaction, so a job never points at nothing.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from psycopg import AsyncConnection
from psycopg.errors import ForeignKeyViolation

from propylon.errors import (
    Conflict,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    PropylonError,
    RequestTooLarge,
)
from propylon.rag.chunking import ChunkingConfig
from propylon.rag.filename import document_filename
from propylon.rag.ingest import INGEST_KIND
from propylon.rag.parsing.document import Attachment
from propylon.rag.store import CollectionStore, Conn, Row

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_TEXT_WINDOW = 20_000  # characters of document text one request may read
MAX_EXTERNAL_ID = 1024  # bytes (UTF-8): indexed, and a B-tree entry holds at most ~2,700
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


class CollectionExists(PropylonError):
    status = 409
    error_type = "invalid_request_error"
    default_code = "collection_exists"


@asynccontextmanager
async def collection_gone(ref: str) -> AsyncIterator[None]:
    """Rows written into a collection that another request deleted meanwhile (its foreign
    key refuses them): 404, as if the delete had come first, not a 500."""
    try:
        yield
    except ForeignKeyViolation:
        raise NotFound(f"No collection `{ref}`.", param="collection_id") from None


class JobEnqueuer(Protocol):
    """The part of the job queue this service uses (``propylon.jobs.queue.JobQueue``)."""

    async def enqueue(
        self,
        *,
        tenant_id: str,
        kind: str,
        payload: dict[str, Any],
        collection_id: str | None = None,
        max_attempts: int = 3,
        dedupe_key: str | None = None,
        conn: AsyncConnection[Any] | None = None,
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class CollectionDefaults:
    embedding_model: str = "local/all-MiniLM-L6-v2"
    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    max_upload_bytes: int = 50 * 1024 * 1024
    max_attempts: int = 3


@dataclass(frozen=True, slots=True)
class AcceptedDocument:
    """The outcome of an upload: the document, its job, and whether it was a no-op."""

    document: Row
    job_id: str | None
    duplicate: bool


class CollectionService:
    """``check_embedding_model`` raises ``ModelNotFound`` for a name that is not a configured
    embeddings model (the gateway's registry); a new collection's model is checked with it, so
    a wrong name is refused when the collection is made, not at its first upload or search."""

    def __init__(
        self,
        store: CollectionStore,
        jobs: JobEnqueuer,
        defaults: CollectionDefaults,
        check_embedding_model: Callable[[str], object] | None = None,
    ) -> None:
        self._store = store
        self._jobs = jobs
        self._defaults = defaults
        self._check_embedding_model = check_embedding_model

    async def create(
        self,
        tenant_id: str,
        *,
        name: str,
        description: str = "",
        chunking: dict[str, Any] | None = None,
        embedding_model: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Row:
        if not _NAME.match(name) or UUID.match(name):
            raise InvalidRequest(
                "`name` must be 1-128 letters, digits, `.`, `_` or `-`, and not a UUID.",
                param="name",
            )
        defaults = self._defaults.chunking
        try:
            config = ChunkingConfig(
                **{
                    "max_tokens": defaults.max_tokens,
                    "overlap_tokens": defaults.overlap_tokens,
                    **(chunking or {}),
                }
            )
        except (TypeError, ValueError) as exc:
            raise InvalidRequest(f"Invalid `chunking`: {exc}.", param="chunking") from None
        model = embedding_model or self._defaults.embedding_model
        if self._check_embedding_model is not None:
            try:
                self._check_embedding_model(model)
            except ModelNotFound as exc:
                raise ModelNotFound(
                    f"`embedding_model`: {exc.message}", param="embedding_model"
                ) from None
        row = await self._store.create_collection(
            {
                "tenant_id": tenant_id,
                "name": name,
                "description": description,
                "chunking": {
                    "max_tokens": config.max_tokens,
                    "overlap_tokens": config.overlap_tokens,
                },
                "embedding_model": model,
                "metadata": metadata or {},
            }
        )
        if row is None:
            raise CollectionExists(f"A collection named `{name}` already exists.", param="name")
        return await self.get(tenant_id, str(row["id"]))

    async def list_all(self, tenant_id: str) -> list[Row]:
        return await self._store.list_collections(tenant_id)

    async def get(self, tenant_id: str, ref: str) -> Row:
        """A collection of the tenant, by id or name; another tenant's is ``NotFound``."""
        row = await self._store.get_collection(tenant_id, ref)
        if row is None:
            raise NotFound(f"No collection `{ref}`.", param="collection_id")
        return row

    async def delete(self, tenant_id: str, ref: str) -> str:
        collection = await self.get(tenant_id, ref)
        await self._store.delete_collection(tenant_id, str(collection["id"]))
        return str(collection["id"])

    async def add_document(
        self,
        tenant_id: str,
        collection_ref: str,
        *,
        content: bytes,
        filename: str | None = None,
        media_type: str | None = None,
        external_id: str | None = None,
        metadata: dict[str, Any] | None = None,
        key_id: str | None = None,
        conn: Conn | None = None,
    ) -> AcceptedDocument:
        """Store the upload and enqueue its ingestion, unless the same bytes are already in.
        ``key_id``: the API key that uploaded it, whose budget the embeddings are charged to
        (``access.internal_counts_against_budget``). With ``conn``, in its transaction (a
        source sync records the item with it)."""
        limit = self._defaults.max_upload_bytes
        if len(content) > limit:
            raise RequestTooLarge(f"The file is larger than the upload limit of {limit:,} bytes.")
        if not content:
            raise InvalidRequest("The file is empty.", param="file")
        if external_id is not None and len(external_id.encode()) > MAX_EXTERNAL_ID:
            raise InvalidRequest(
                f"`external_id` is longer than {MAX_EXTERNAL_ID:,} bytes (UTF-8).",
                param="external_id",
            )
        filename = document_filename(filename)
        collection = await self.get(tenant_id, collection_ref)
        collection_id = str(collection["id"])
        sha256 = hashlib.sha256(content).hexdigest()
        async with collection_gone(collection_ref), self._transaction(conn) as conn:
            await self._store.lock_collection(conn, collection_id)
            same = await self._store.find_by_sha256(conn, collection_id, sha256)
            if same is not None and _alive(same):
                return AcceptedDocument(_public(same), same["job_id"], duplicate=True)
            document = same
            if document is None and external_id is not None:
                document = await self._store.find_by_external_id(conn, collection_id, external_id)
            if document is not None and not await self._store.lock_document(
                conn, str(document["id"])
            ):
                document = None  # deleted meanwhile (its delete held the lock): a new one
            if document is None:
                document = await self._store.insert_document(
                    conn,
                    {
                        "collection_id": collection_id,
                        "external_id": external_id,
                        "filename": filename,
                        "media_type": media_type,
                        "size_bytes": len(content),
                        "metadata": metadata or {},
                    },
                )
                metadata = None
            document_id = str(document["id"])
            upload_id = await self._store.insert_upload(
                conn,
                {
                    "document_id": document_id,
                    "sha256": sha256,
                    "content": content,
                    "filename": filename,
                    "media_type": media_type,
                },
            )
            job_id = await self._jobs.enqueue(
                tenant_id=tenant_id,
                kind=INGEST_KIND,
                payload={
                    "upload_id": upload_id,
                    "document_id": document_id,
                    "max_attempts": self._defaults.max_attempts,
                    "key_id": key_id,
                },
                collection_id=collection_id,
                max_attempts=self._defaults.max_attempts,
                conn=conn,
            )
            row = await self._store.requeue_document(conn, document_id, job_id, metadata)
        return AcceptedDocument(_public(row), job_id, duplicate=False)

    async def add_attachments(
        self, conn: Conn, tenant_id: str, parent: Row, attachments: list[Attachment],
        key_id: str | None,
    ) -> int:  # fmt: skip
        """Accept a document's attachments as child documents (metadata ``parent_id`` and
        ``location``), in ``conn`` 's transaction (the parent's storing); one that cannot be
        accepted (too large) is skipped. How many were accepted."""
        parent_id = str(parent["document_id"])
        accepted = 0
        for number, attachment in enumerate(attachments, 1):
            try:
                await self.add_document(
                    tenant_id,
                    str(parent["collection_id"]),
                    content=attachment.data,
                    filename=attachment.name,
                    external_id=f"{parent_id}/attachment/{number}",
                    metadata={"parent_id": parent_id, "location": attachment.location},
                    key_id=key_id,
                    conn=conn,
                )
                accepted += 1
            except (InvalidRequest, RequestTooLarge):
                continue
        return accepted

    async def list_documents(
        self, tenant_id: str, collection_ref: str, *, limit: int = 100, offset: int = 0
    ) -> list[Row]:
        collection = await self.get(tenant_id, collection_ref)
        rows = await self._store.list_documents(str(collection["id"]), limit=limit, offset=offset)
        return [_public(row) for row in rows]

    async def get_document(self, tenant_id: str, collection_ref: str, document_id: str) -> Row:
        collection = await self.get(tenant_id, collection_ref)
        row = None
        if UUID.match(document_id):
            row = await self._store.get_document(str(collection["id"]), document_id)
        if row is None:
            raise NotFound(f"No document `{document_id}` in this collection.", param="document_id")
        return _public(row)

    async def document_text(
        self, tenant_id: str, collection_ref: str, document_id: str, start: int, end: int
    ) -> Row:
        """``text[start:end]`` of a document (the passage around a citation), clamped to the
        text; ``total`` is the text's length."""
        if end < start:
            raise InvalidRequest("`end` must not be before `start`.", param="end")
        if end - start > MAX_TEXT_WINDOW:
            raise InvalidRequest(f"At most {MAX_TEXT_WINDOW:,} characters at a time.", param="end")
        document = await self.get_document(tenant_id, collection_ref, document_id)
        row = await self._store.document_text(
            str(document["collection_id"]), str(document["id"]), start, end - start
        )
        if row is None:
            raise NotFound(f"No document `{document_id}` in this collection.", param="document_id")
        if row["total"] is None:  # no text: not parsed yet, or its parsing failed
            raise Conflict(
                f"Document `{document_id}` has no text yet (status: {document['status']}).",
                param="document_id",
                code="document_not_ready",
            )
        text, total = row["text"] or "", int(row["total"])
        begin = min(start, total)
        return {
            "object": "document.text",
            "document_id": str(document["id"]),
            "start": begin,
            "end": begin + len(text),
            "total": total,
            "text": text,
        }

    async def delete_document_in(self, conn: Conn, collection_id: str, document_id: str) -> None:
        """Delete a document its caller found itself (a source sync), in ``conn`` 's
        transaction."""
        await self._store.delete_document(collection_id, document_id, conn)

    @asynccontextmanager
    async def _transaction(self, conn: Conn | None) -> AsyncIterator[Conn]:
        if conn is not None:
            yield conn
        else:
            async with self._store.database.connection() as own:
                yield own

    async def delete_document(self, tenant_id: str, collection_ref: str, document_id: str) -> None:
        document = await self.get_document(tenant_id, collection_ref, document_id)
        await self._store.delete_document(str(document["collection_id"]), str(document["id"]))


def _public(row: Row) -> Row:
    """A document row without its text and internal columns."""
    return {k: v for k, v in row.items() if k not in ("text", "pending_upload")}


def _alive(document: Row) -> bool:
    """Ingested, or on its way: not failed, and its job has not ended without it."""
    return document["status"] == "ready" or (
        document["status"] != "failed" and not document["job_ended"]
    )
