"""``AccessStore``: tenants, keys and spend in PostgreSQL (SQL in ``queries.sql``).

Every change to a key or tenant sends ``NOTIFY propylon_access`` in the same transaction,
so the ``KeyDirectory`` of every replica (and of every ``serve`` when the CLI made the
change) reloads it at once.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from propylon.access.budgets import Budget
from propylon.access.keys import (
    KEY_PREFIX,
    KeyRecord,
    display_prefix,
    generate_key,
    hash_key,
    new_secret,
)
from propylon.access.limits import Limits
from propylon.access.queries import query
from propylon.db.database import Database
from propylon.errors import Conflict, InvalidRequest, NotFound
from propylon.params import is_uuid
from propylon.principal import FEATURES

CHANNEL = "propylon_access"
DEFAULT_FEATURES = frozenset({"chat", "embeddings", "rag"})


@dataclass(frozen=True, slots=True)
class UsageRow:
    """Spend of one key on one day, to add to ``key_usage``."""

    key_id: str
    day: dt.date
    tenant_id: str
    origin: str  # "user" | "internal"
    requests: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float


class AccessStore:
    def __init__(self, database: Database) -> None:
        self.database = database
        self._observers: list[Callable[[KeyRecord], None]] = []

    def observe(self, callback: Callable[[KeyRecord], None]) -> None:
        """Call ``callback`` with each key this store creates or revokes, before returning:
        the process that made a change sees it at once, others through NOTIFY."""
        self._observers.append(callback)

    def _changed(self, record: KeyRecord) -> KeyRecord:
        for callback in self._observers:
            callback(record)
        return record

    async def create_tenant(
        self, name: str, limits: Limits | None = None, budget: Budget | None = None
    ) -> dict[str, Any]:
        name = _clean_name(name)
        try:
            async with self.database.connection() as conn:
                cur = await conn.execute(
                    query("create_tenant"),
                    {
                        "name": name,
                        "limits": Jsonb((limits or Limits()).to_json()),
                        "budget": Jsonb((budget or Budget()).to_json()),
                    },
                )
                row = await cur.fetchone()
        except psycopg.errors.UniqueViolation:
            raise InvalidRequest(
                f"A tenant named {name!r} already exists.", param="name", code="tenant_exists"
            ) from None
        assert row is not None
        return _tenant(row)

    async def list_tenants(self) -> list[dict[str, Any]]:
        async with self.database.connection() as conn:
            cur = await conn.execute(query("list_tenants"))
            return [{**_tenant(r), "active_keys": r["active_keys"]} for r in await cur.fetchall()]

    async def create_key(
        self,
        tenant: str,
        *,
        name: str = "",
        models: Iterable[str] | None = None,
        features: Iterable[str] | None = None,
        limits: Limits | None = None,
        budget: Budget | None = None,
    ) -> tuple[str, KeyRecord]:
        """A new key for ``tenant``: a tenant's name (the tenant is created when missing) or
        id (404 when there is none). The key is returned only here."""
        chosen = frozenset(features) if features is not None else DEFAULT_FEATURES
        if _invisible(name):
            raise InvalidRequest(
                "A key's name may not hold control or formatting characters.", param="name"
            )
        if _looks_like_a_key_ref(name):
            raise InvalidRequest(
                "A key's name may not look like a key id (a UUID) or a key's display prefix "
                f"(`{KEY_PREFIX}…`): keys are revoked and looked up by either.",
                param="name",
            )
        unknown = chosen - FEATURES
        if unknown or not chosen:
            raise InvalidRequest(
                f"Features must be among {sorted(FEATURES)}; got {sorted(chosen)}.",
                param="features",
            )
        async with self.database.connection() as conn:
            key = generate_key(await _key_secret(conn))
            if is_uuid(tenant):
                cur = await conn.execute(query("tenant_by_id"), {"id": tenant})
                tenant_row = await cur.fetchone()
                if tenant_row is None:
                    raise NotFound(f"No tenant with the id {tenant}.", param="tenant")
            else:
                cur = await conn.execute(query("ensure_tenant"), {"name": _clean_name(tenant)})
                tenant_row = await cur.fetchone()
            assert tenant_row is not None
            if name:
                cur = await conn.execute(
                    query("active_key_named"), {"tenant_id": tenant_row["id"], "name": name}
                )
                taken = await cur.fetchone()
                if taken is not None and taken["taken"]:
                    raise Conflict(
                        f"Tenant {tenant_row['name']!r} has a key named {name!r} in use: names "
                        "find keys to revoke; revoke that one first, or choose another name.",
                        param="name",
                        code="key_name_exists",
                    )
            cur = await conn.execute(
                query("create_key"),
                {
                    "tenant_id": tenant_row["id"],
                    "name": name,
                    "prefix": display_prefix(key),
                    "key_hash": hash_key(key),
                    "models": None if models is None else sorted(set(models)),
                    "features": sorted(chosen),
                    "limits": Jsonb((limits or Limits()).to_json()),
                    "budget": Jsonb((budget or Budget()).to_json()),
                },
            )
            row = await cur.fetchone()
            assert row is not None
            await conn.execute(query("notify"), {"payload": f"key:{row['id']}"})
        [record] = await self.keys(key_id=str(row["id"]))
        return key, self._changed(record)

    async def key_secret(self) -> bytes:
        """The current key secret (made now if this database has none yet)."""
        async with self.database.connection() as conn:
            return await _key_secret(conn)

    async def rotate_key_secret(self) -> int:
        """Make a new key secret and tell every replica; its generation number. New keys are
        checked under it; every existing key keeps working (keys are found by hash)."""
        async with self.database.connection() as conn:
            cur = await conn.execute(query("rotate_key_secret"), {"secret": new_secret()})
            row = await cur.fetchone()
            assert row is not None
            await conn.execute(query("notify"), {"payload": "secret"})
        generation: int = row["generation"]
        return generation

    async def keys(
        self,
        *,
        key_id: str | None = None,
        tenant_id: str | None = None,
        tenant_name: str | None = None,
        key_hash: bytes | None = None,
        timeout: float | None = None,
    ) -> list[KeyRecord]:
        params = {
            "key_id": key_id,
            "tenant_id": tenant_id,
            "tenant_name": tenant_name,
            "key_hash": key_hash,
        }
        async with self.database.connection(timeout=timeout) as conn:
            cur = await conn.execute(query("key_records"), params)
            return [KeyRecord.from_row(r) for r in await cur.fetchall()]

    async def find_key(self, ref: str, tenant_id: str | None = None) -> KeyRecord:
        """The key whose id, display prefix or name is ``ref`` (of ``tenant_id`` only, when
        given: another tenant's key is not found)."""
        async with self.database.connection() as conn:
            cur = await conn.execute(query("find_keys"), {"ref": ref, "tenant_id": tenant_id})
            rows = await cur.fetchall()
        if not rows:
            raise NotFound(f"No API key matches {ref!r}.", param="key")
        rows = [row for row in rows if row["rank"] == rows[0]["rank"]]  # the best kind of match
        if len(rows) > 1:
            raise InvalidRequest(f"{ref!r} matches {len(rows)} keys; use the id.", param="key")
        [record] = await self.keys(key_id=str(rows[0]["id"]))
        return record

    async def revoke(self, ref: str, tenant_id: str | None = None) -> KeyRecord:
        """Mark the key revoked and notify every server. Callers revoke through
        ``KeyRevocation``, which also cancels the key's queued runs."""
        record = await self.find_key(ref, tenant_id)
        async with self.database.connection() as conn:
            await conn.execute(query("revoke_key"), {"key_id": record.id})
            await conn.execute(query("notify"), {"payload": f"key:{record.id}"})
        [revoked] = await self.keys(key_id=record.id)
        self._changed(revoked)
        return revoked

    async def usage(self, ref: str, days: int = 31, tenant_id: str | None = None) -> dict[str, Any]:
        record = await self.find_key(ref, tenant_id)
        async with self.database.connection() as conn:
            cur = await conn.execute(query("key_usage"), {"key_id": record.id, "days": days})
            rows = await cur.fetchall()
        return {
            "key": record.describe(),
            "days": [
                {
                    "day": r["day"].isoformat(),
                    "requests": r["requests"],
                    "prompt_tokens": r["prompt_tokens"],
                    "completion_tokens": r["completion_tokens"],
                    "cost_usd": float(r["cost_usd"]),
                    "internal": {
                        "requests": r["internal_requests"],
                        "prompt_tokens": r["internal_prompt_tokens"],
                        "completion_tokens": r["internal_completion_tokens"],
                        "cost_usd": float(r["internal_cost_usd"]),
                    },
                }
                for r in rows
            ],
        }

    async def record_usage_rows(self, rows: list[UsageRow]) -> None:
        """Add several (key, day) tallies in one transaction (see ``access.usage``)."""
        async with self.database.connection(timeout=5.0) as conn, conn.cursor() as cur:
            await cur.executemany(
                query("record_usage"),
                [
                    {
                        "key_id": row.key_id,
                        "tenant_id": row.tenant_id,
                        "day": row.day,
                        "origin": row.origin,
                        "requests": row.requests,
                        "prompt_tokens": row.prompt_tokens,
                        "completion_tokens": row.completion_tokens,
                        "cost_usd": row.cost_usd,
                    }
                    for row in rows
                ],
            )

    async def spend(
        self, record: KeyRecord, today: dt.date, *, internal: bool = True
    ) -> dict[str, Any]:
        """Tokens and cost spent by the key and its tenant in their budgets' periods; the
        calls Propylon made for them (``origin: internal``) only when ``internal``."""
        async with self.database.connection(timeout=1.0) as conn:
            cur = await conn.execute(
                query("spend"),
                {
                    "key_id": record.id,
                    "tenant_id": record.tenant_id,
                    "key_since": record.budget.start(today),
                    "tenant_since": record.tenant_budget.start(today),
                    "internal": internal,
                },
            )
            row = await cur.fetchone()
        assert row is not None
        return dict(row)


async def _key_secret(conn: psycopg.AsyncConnection[Any]) -> bytes:
    await conn.execute(query("ensure_key_secret"), {"secret": new_secret()})
    cur = await conn.execute(query("current_key_secret"))
    row = await cur.fetchone()
    assert row is not None
    return bytes(row["secret"])


def _clean_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 200:
        raise InvalidRequest("A tenant name must have 1 to 200 characters.", param="tenant")
    if is_uuid(name):  # where a tenant is named, its id is taken too
        raise InvalidRequest("A tenant name may not be a UUID (an id).", param="tenant")
    if _invisible(name):
        raise InvalidRequest(
            "A tenant name may not hold control or formatting characters.", param="tenant"
        )
    return name


def _invisible(name: str) -> bool:
    """Control characters and format characters (U+202E, right-to-left override; zero-width
    spaces): names are shown in listings, logs and the console, where they would make one
    name look like another."""
    return any(unicodedata.category(c) in ("Cc", "Cf") for c in name)


def _looks_like_a_key_ref(name: str) -> bool:
    return is_uuid(name) or name.startswith(KEY_PREFIX)


def _tenant(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "name": row["name"],
        "limits": Limits.stored(row["limits"]).to_json(),
        "budget": Budget.stored(row["budget"]).to_json(),
        "created_at": row["created_at"].isoformat(),
    }
