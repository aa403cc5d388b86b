"""Sources and their sync bookkeeping in PostgreSQL (migration 0021).

Each item's effect (a document accepted, a version noted, a document deleted) and the record
that this sync job dealt with the item are written in one transaction, so a sync run again
after its worker was lost picks up where it was and ends with the same counts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

from psycopg.types.json import Jsonb

from propylon.db.database import Database
from propylon.rag.sources.queries import QUERIES
from propylon.rag.store import Conn, Row


class SourceStore:
    def __init__(self, database: Database) -> None:
        self.database = database

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Conn]:
        async with self.database.connection() as conn:
            yield conn

    async def insert(self, values: Row) -> Row:
        async with self.database.connection() as conn:
            cur = await conn.execute(
                QUERIES["source_insert"], {**values, "config": Jsonb(values["config"])}
            )
            row = await cur.fetchone()
        assert row is not None
        return row

    async def list_sources(self, tenant_id: str, collection_id: str) -> list[Row]:
        async with self.database.connection() as conn:
            cur = await conn.execute(
                QUERIES["source_list"], {"tenant_id": tenant_id, "collection_id": collection_id}
            )
            return await cur.fetchall()

    async def get(self, tenant_id: str, collection_id: str, source_id: str) -> Row | None:
        async with self.database.connection() as conn:
            cur = await conn.execute(
                QUERIES["source_get"],
                {"tenant_id": tenant_id, "collection_id": collection_id, "source_id": source_id},
            )
            return await cur.fetchone()

    async def load(self, source_id: str) -> Row | None:
        async with self.database.connection() as conn:
            cur = await conn.execute(QUERIES["source_load"], {"source_id": source_id})
            return await cur.fetchone()

    async def own_documents(self, source_id: str) -> list[str]:
        """The documents only this source brought in (deleted with it)."""
        async with self.database.connection() as conn:
            cur = await conn.execute(QUERIES["item_documents"], {"source_id": source_id})
            return [str(row["document_id"]) for row in await cur.fetchall()]

    async def delete(self, source_id: str) -> None:
        async with self.database.connection() as conn:
            await conn.execute(QUERIES["source_delete"], {"source_id": source_id})

    async def set_secret(self, source_id: str, secret: str) -> None:
        async with self.database.connection() as conn:
            await conn.execute(
                QUERIES["source_set_secret"], {"source_id": source_id, "secret": secret}
            )

    async def set_job(self, conn: Conn, source_id: str, job_id: str) -> None:
        await conn.execute(QUERIES["source_set_job"], {"source_id": source_id, "job_id": job_id})

    async def due(self, conn: Conn, limit: int) -> list[Row]:
        """Scheduled sources due now, each moved to its next time (in ``conn`` 's transaction)."""
        cur = await conn.execute(QUERIES["sources_due"], {"limit": limit})
        return await cur.fetchall()

    # One sync --------------------------------------------------------------------------------

    async def items(self, source_id: str) -> dict[str, Row]:
        """What the collection holds of the source: key -> document id, version, sha256,
        links (a crawled page's)."""
        async with self.database.connection() as conn:
            cur = await conn.execute(QUERIES["item_list"], {"source_id": source_id})
            return {str(row["key"]): row for row in await cur.fetchall()}

    async def done(self, job_id: str) -> dict[str, str]:
        """The items this sync job has already dealt with: key -> outcome (and the records of
        syncs that ended without completing are dropped)."""
        async with self.database.connection() as conn:
            await conn.execute(QUERIES["sync_forget_ended"])
            cur = await conn.execute(QUERIES["sync_done"], {"job_id": job_id})
            return {str(row["key"]): str(row["outcome"]) for row in await cur.fetchall()}

    async def record(self, conn: Conn, job_id: str, key: str, outcome: str) -> None:
        await conn.execute(
            QUERIES["sync_record"], {"job_id": job_id, "key": key, "outcome": outcome}
        )

    async def keep_item(
        self, conn: Conn, source_id: str, key: str, document_id: str, version: str | None,
        sha256: str, links: Sequence[str] | None = None,
    ) -> None:  # fmt: skip
        await conn.execute(
            QUERIES["item_upsert"],
            {
                "source_id": source_id,
                "key": key,
                "document_id": document_id,
                "version": version,
                "sha256": sha256,
                "links": list(links) if links is not None else None,
            },
        )

    async def forget_item(self, conn: Conn, source_id: str, key: str) -> str | None:
        """Remove the item; its document id when no other item points to that document."""
        cur = await conn.execute(QUERIES["item_delete"], {"source_id": source_id, "key": key})
        row = await cur.fetchone()
        if row is None:
            return None
        document_id = str(row["document_id"])
        return document_id if await self.unshared(conn, document_id) else None

    async def unshared(self, conn: Conn, document_id: str) -> bool:
        """No source item points to the document any more."""
        cur = await conn.execute(QUERIES["document_unshared"], {"document_id": document_id})
        row = await cur.fetchone()
        return row is not None and bool(row["unshared"])

    async def finish(
        self,
        job_id: str,
        source_id: str,
        result: dict[str, Any],
        complete: Callable[[Conn, dict[str, Any]], Awaitable[None]],
    ) -> dict[str, Any]:
        """The sync's counts (over every attempt) into ``result``, recorded on the source,
        and the job completed (``complete``), in one transaction."""
        async with self.database.connection() as conn:
            cur = await conn.execute(QUERIES["sync_counts"], {"job_id": job_id})
            counts = Counter({str(row["outcome"]): int(row["n"]) for row in await cur.fetchall()})
            result = {**result, **{o: counts.get(o, 0) for o in OUTCOMES}}
            await conn.execute(
                QUERIES["source_synced"],
                {"source_id": source_id, "job_id": job_id, "result": Jsonb(result)},
            )
            await conn.execute(QUERIES["sync_forget"], {"job_id": job_id})
            await complete(conn, result)
        return result


OUTCOMES = ("added", "replaced", "deleted", "skipped", "rejected")
