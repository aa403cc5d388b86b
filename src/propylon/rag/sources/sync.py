"""The sync job (``rag.sync``): bring a collection in step with one of its sources.

The connector lists the source; each item is compared with what the collection holds of it:
a new key is ingested (``added``), a key whose version (ETag, Last-Modified, mtime and size)
or, failing that, content hash changed gets a new version of its document (``replaced``: the
ingestion job swaps its chunks in one transaction), an unchanged one is ``skipped`` without
being fetched when its version says so (a web page: when its conditional GET answers 304),
and keys the source no longer lists are ``deleted`` with their documents. Items that cannot be
ingested (too large, unreadable) are ``rejected`` and left as they were. Each item's effect
and its outcome are one transaction (``SourceStore``), so a sync run again after its worker
was lost skips the items it already dealt with and ends with the same counts. Deletions
happen only after a complete listing.

The counts are the job's progress counters while it runs and its result when it ends; the
source keeps the last result. ``schedule()`` is called by every worker periodically
(``propylon.jobs.handler``, Periodic) and enqueues the syncs of scheduled sources now due.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from typing import Any

from propylon.errors import PropylonError
from propylon.jobs.handler import JobContext
from propylon.rag.collections import CollectionService, JobEnqueuer
from propylon.rag.sources.connector import (
    Connector,
    ItemRejected,
    KnownItem,
    SourceItem,
    SourceUnavailable,
)
from propylon.rag.sources.kinds import SourceRules, source_type
from propylon.rag.sources.store import SourceStore
from propylon.rag.store import Conn, Row
from propylon.sealed import SealedSecretError, is_sealed, open_secret
from propylon.storable import escape_unstorable, is_storable

log = logging.getLogger(__name__)

SYNC_KIND = "rag.sync"
SCHEDULE_BATCH = 100


async def enqueue_sync(
    jobs: JobEnqueuer, conn: Conn, tenant_id: str, source_id: str, collection_id: str
) -> str:
    """Enqueue a sync of the source in ``conn``'s transaction; its job id. One live sync per
    source: asking again while one waits or runs returns that one."""
    return await jobs.enqueue(
        tenant_id=tenant_id,
        kind=SYNC_KIND,
        payload={"source_id": source_id},
        collection_id=collection_id,
        dedupe_key=f"source:{source_id}",
        conn=conn,
    )


def external_id(source_id: str, key: str) -> str:
    return f"source:{source_id}:{key}"


class SyncHandler:
    """Runs ``rag.sync`` jobs; payload ``{"source_id"}``."""

    def __init__(
        self,
        sources: SourceStore,
        collections: CollectionService,
        jobs: JobEnqueuer,
        rules: SourceRules,
    ) -> None:
        self._sources = sources
        self._collections = collections
        self._jobs = jobs
        self._rules = rules

    async def __call__(self, ctx: JobContext) -> dict[str, Any] | None:
        source_id = str(ctx.payload["source_id"])
        source = await self._sources.load(source_id)
        if source is None:
            return {"source_id": source_id, "skipped": "the source was deleted"}
        done = await self._sources.done(ctx.job_id)
        known = await self._sources.items(source_id)
        counts: Counter[str] = Counter(done.values())
        seen: set[str] = set()
        await ctx.progress(stage="listing", counters=dict(counts))
        kind = source_type(source["type"])
        connector = kind.open(dict(source["config"]), await self._secret(source), self._rules)
        async with connector:
            stored = {
                key: KnownItem(row["version"], _links(row["links"])) for key, row in known.items()
            }
            async for item in connector.items(stored):
                if item.key in seen:
                    continue
                seen.add(item.key)
                if item.key not in done:
                    outcome = await self._apply(ctx, source, connector, item, known.get(item.key))
                    counts[outcome] += 1
                await ctx.raise_if_cancelled()
                await ctx.progress(stage="syncing", counters={**counts, "listed": len(seen)})
        gone = sorted(set(known) - seen - set(done))
        for number, key in enumerate(gone, 1):
            await self._delete(ctx, source, key)
            counts["deleted"] += 1
            await ctx.progress(stage="deleting", fraction=number / len(gone), counters=dict(counts))

        async def complete(conn: Conn, result: dict[str, Any]) -> None:
            await ctx.complete_in(conn, result)

        result = await self._sources.finish(
            ctx.job_id, source_id, {"source_id": source_id, "listed": len(seen)}, complete
        )
        log.info("source synced", extra={"source_id": source_id, "job_id": ctx.job_id, **result})
        return result

    async def _secret(self, source: Row) -> str | None:
        """The source's secret, opened; one stored in clear (before secrets were sealed) is
        sealed now when this process has the key."""
        stored: str | None = source["secret"]
        keys = self._rules.secrets
        try:
            secret = open_secret(stored, keys, "rag.sources.secrets_key")
        except SealedSecretError as exc:
            raise SourceUnavailable(str(exc)) from None
        if stored is not None and secret is not None and keys is not None and not is_sealed(stored):
            await self._sources.set_secret(str(source["id"]), keys.seal(secret))
        return secret

    async def _apply(
        self,
        ctx: JobContext,
        source: Row,
        connector: Connector,
        item: SourceItem,
        known: Row | None,
    ) -> str:
        if item.rejected is not None:
            return await self._reject(ctx, item.key, item.rejected)
        if not is_storable(item.key):  # a file named in bytes that are not UTF-8, say
            reason = f"`{escape_unstorable(item.key)}`: its name cannot be stored (not UTF-8)."
            return await self._reject(ctx, item.key, reason)
        if known is not None and item.version is not None and known["version"] == item.version:
            return await self._note(ctx, source, item, known, "skipped")
        try:
            content = item.content if item.content is not None else await connector.fetch(item)
        except ItemRejected as exc:
            return await self._reject(ctx, item.key, str(exc))
        sha256 = hashlib.sha256(content).hexdigest()
        if known is not None and known["sha256"] == sha256:
            return await self._note(ctx, source, item, known, "skipped")
        outcome = "added" if known is None else "replaced"
        source_id = str(source["id"])
        try:
            async with self._sources.transaction() as conn:
                accepted = await self._collections.add_document(
                    ctx.tenant_id,
                    str(source["collection_id"]),
                    content=content,
                    filename=item.filename,
                    media_type=item.media_type,
                    external_id=external_id(source_id, item.key),
                    metadata={"source_id": source_id, "source_key": item.key},
                    key_id=source["key_id"],
                    conn=conn,
                )
                document_id = str(accepted.document["id"])
                await self._sources.keep_item(
                    conn, source_id, item.key, document_id, item.version, sha256, item.links
                )
                old = None if known is None else str(known["document_id"])
                if (
                    old is not None
                    and old != document_id
                    and await self._sources.unshared(conn, old)
                ):
                    # The new bytes are another document's: the key now shares that one, and
                    # its old version goes.
                    await self._collections.delete_document_in(
                        conn, str(source["collection_id"]), old
                    )
                await self._sources.record(conn, ctx.job_id, item.key, outcome)
        except PropylonError as exc:
            if exc.retryable:
                raise
            return await self._reject(ctx, item.key, exc.message)
        return outcome

    async def _note(
        self, ctx: JobContext, source: Row, item: SourceItem, known: Row, outcome: str
    ) -> str:
        async with self._sources.transaction() as conn:
            await self._sources.keep_item(
                conn, str(source["id"]), item.key, str(known["document_id"]), item.version,
                str(known["sha256"]), item.links,
            )  # fmt: skip
            await self._sources.record(conn, ctx.job_id, item.key, outcome)
        return outcome

    async def _reject(self, ctx: JobContext, key: str, reason: str) -> str:
        log.warning("source item not ingested", extra={"job_id": ctx.job_id, "reason": reason})
        async with self._sources.transaction() as conn:
            await self._sources.record(conn, ctx.job_id, escape_unstorable(key), "rejected")
        return "rejected"

    async def _delete(self, ctx: JobContext, source: Row, key: str) -> None:
        async with self._sources.transaction() as conn:
            document_id = await self._sources.forget_item(conn, str(source["id"]), key)
            if document_id is not None:
                await self._collections.delete_document_in(
                    conn, str(source["collection_id"]), document_id
                )
            await self._sources.record(conn, ctx.job_id, key, "deleted")

    async def schedule(self) -> int:
        """Enqueue the syncs of scheduled sources that are due; how many."""
        async with self._sources.transaction() as conn:
            due = await self._sources.due(conn, SCHEDULE_BATCH)
            for row in due:
                await enqueue_sync(
                    self._jobs,
                    conn,
                    str(row["tenant_id"]),
                    str(row["id"]),
                    str(row["collection_id"]),
                )
        return len(due)


def _links(value: Any) -> tuple[str, ...] | None:
    return tuple(value) if value is not None else None
