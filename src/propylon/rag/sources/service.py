"""Sources of a collection, per tenant: the service the HTTP routes and the CLI call.

A source is checked when it is made (its type's rules: allowed folders, http(s) URLs, a
complete S3 configuration); its secret (S3's secret key) is stored apart from its
configuration, sealed with the operator's key (``rag.sources.secrets_key``; without one, a
source that needs a secret is refused), and never rendered. Syncing enqueues a ``rag.sync``
job, one live job per source.
"""

from __future__ import annotations

from typing import Any

from propylon.errors import InvalidRequest, NotFound
from propylon.params import only_fields
from propylon.rag.collections import UUID, CollectionService, JobEnqueuer, collection_gone
from propylon.rag.sources.connector import InvalidSource
from propylon.rag.sources.kinds import SourceRules, source_type
from propylon.rag.sources.s3 import mask
from propylon.rag.sources.store import SourceStore
from propylon.rag.sources.sync import enqueue_sync
from propylon.rag.store import Row

MAX_INTERVAL_S = 366 * 24 * 3600


class SourceService:
    def __init__(
        self,
        store: SourceStore,
        collections: CollectionService,
        jobs: JobEnqueuer,
        rules: SourceRules,
    ) -> None:
        self._store = store
        self._collections = collections
        self._jobs = jobs
        self._rules = rules

    async def create(
        self,
        tenant_id: str,
        collection_ref: str,
        body: dict[str, Any],
        *,
        key_id: str | None = None,
    ) -> Row:
        """A new source from a request body ``{"type", "config", "interval_s",
        "secret_access_key"}``; its first sync is enqueued at once (``job_id``)."""
        only_fields(body, ("type", "config", "interval_s", "secret_access_key"), "")
        collection = await self._collections.get(tenant_id, collection_ref)
        kind = source_type(body.get("type"))
        config = body.get("config", {})
        if not isinstance(config, dict):
            raise InvalidRequest("`config` must be an object.", param="config")
        secret = body.get("secret_access_key")
        if secret is not None and not isinstance(secret, str):
            raise InvalidRequest("`secret_access_key` must be a string.", param="secret_access_key")
        if secret is not None and not kind.secret:
            raise InvalidRequest(
                "`secret_access_key` is for `s3` sources only.", param="secret_access_key"
            )
        interval = body.get("interval_s")
        if interval is not None and (
            not isinstance(interval, int)
            or isinstance(interval, bool)
            or not self._rules.min_interval_s <= interval <= MAX_INTERVAL_S
        ):
            raise InvalidRequest(
                f"`interval_s` must be a whole number of seconds from "
                f"{self._rules.min_interval_s} to {MAX_INTERVAL_S}.",
                param="interval_s",
            )
        try:
            checked = kind.check(config, secret, self._rules)
        except InvalidSource as exc:  # named where the body holds it: `config.url`
            param = exc.param if exc.param in (None, "secret_access_key") else f"config.{exc.param}"
            raise InvalidSource(exc.message, param=param, code=exc.code) from None
        # What the check keeps is all a type reads: anything else would be dropped unread.
        only_fields(config, tuple(checked), "config")
        if secret is not None and self._rules.secrets is None:
            raise InvalidSource(
                "An `s3` source's secret key is stored sealed with a key the operator holds, "
                "and none is set: an operator sets `rag.sources.secrets_key` (environment "
                "`PROPYLON_RAG__SOURCES__SECRETS_KEY`; make one with `openssl rand -base64 32`) "
                "on every server and worker, then the source can be made.",
                param="secret_access_key",
                code="secrets_key_not_set",
            )
        values = {
            "tenant_id": tenant_id,
            "collection_id": str(collection["id"]),
            "type": body["type"],
            "config": checked,
            "secret": self._rules.secrets.seal(secret)
            if self._rules.secrets is not None and secret is not None
            else None,
            "key_id": key_id,
            "interval_s": interval,
        }
        async with collection_gone(collection_ref):  # deleted since it was read above
            row = await self._store.insert(values)
            job_id = await self.sync(tenant_id, str(collection["id"]), str(row["id"]))
        return {
            **await self.get(tenant_id, str(collection["id"]), str(row["id"])),
            "job_id": job_id,
        }

    async def list_all(self, tenant_id: str, collection_ref: str) -> list[Row]:
        collection = await self._collections.get(tenant_id, collection_ref)
        rows = await self._store.list_sources(tenant_id, str(collection["id"]))
        return [public(row) for row in rows]

    async def get(self, tenant_id: str, collection_ref: str, source_id: str) -> Row:
        return public(await self._find(tenant_id, collection_ref, source_id))

    async def delete(self, tenant_id: str, collection_ref: str, source_id: str) -> str:
        """Delete the source and the documents only it brought in."""
        source = await self._find(tenant_id, collection_ref, source_id)
        collection_id = str(source["collection_id"])
        for document_id in await self._store.own_documents(str(source["id"])):
            async with self._store.transaction() as conn:
                await self._collections.delete_document_in(conn, collection_id, document_id)
        await self._store.delete(str(source["id"]))
        return str(source["id"])

    async def sync(self, tenant_id: str, collection_ref: str, source_id: str) -> str:
        """Enqueue a sync of the source (or return the one waiting or running); its job id."""
        source = await self._find(tenant_id, collection_ref, source_id)
        async with self._store.transaction() as conn:
            job_id = await enqueue_sync(
                self._jobs, conn, tenant_id, str(source["id"]), str(source["collection_id"])
            )
            await self._store.set_job(conn, str(source["id"]), job_id)
        return job_id

    async def _find(self, tenant_id: str, collection_ref: str, source_id: str) -> Row:
        collection = await self._collections.get(tenant_id, collection_ref)
        row = None
        if UUID.match(source_id):
            row = await self._store.get(tenant_id, str(collection["id"]), source_id)
        if row is None:
            raise NotFound(f"No source `{source_id}` in this collection.", param="source_id")
        return row


def public(row: Row) -> Row:
    """A source as the API shows it: the secret never, the access key id masked."""
    config = dict(row["config"])
    if "access_key_id" in config:
        config["access_key_id"] = mask(str(config["access_key_id"]))
    shown = {k: v for k, v in row.items() if k not in ("secret", "key_id", "tenant_id")}
    return {**shown, "config": config, "has_secret": row.get("secret") is not None}
