"""``KeyDirectory``: every key in memory, kept current by LISTEN/NOTIFY; authenticates tokens.

At start it LISTENs on ``propylon_access``, then loads every key. Each change made by any
process (another replica, the CLI) arrives as a notification and reloads that key, so a
revocation is refused by every replica within milliseconds. A lost listening connection is
reopened (with a full reload) in the background.

Why a full snapshot rather than a short cache: authentication never waits on the database,
and an unknown key gets 401 even while the database is down. A well-formed key missing from
the snapshot (created a moment ago, before its notification arrived) is looked up once; if
that lookup fails because the database is down, the key is treated as unknown (401): the
snapshot was complete up to the outage, so a key it lacks cannot have been usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

import psycopg

from propylon.access.keys import KeyRecord, has_valid_check, hash_key, looks_like_key
from propylon.access.store import CHANNEL, AccessStore
from propylon.errors import AuthenticationFailed, PermissionDenied
from propylon.principal import Principal

log = logging.getLogger(__name__)

_MISS_TTL_S = 5.0
_MAX_MISSES = 10_000


class KeyDirectory:
    def __init__(self, store: AccessStore, *, lookup_timeout_s: float = 1.0) -> None:
        self._store = store
        self._lookup_timeout_s = lookup_timeout_s
        self._by_hash: dict[bytes, KeyRecord] = {}
        self._by_id: dict[str, KeyRecord] = {}
        self._misses: dict[bytes, float] = {}
        self._secret = b""  # the key secret, loaded with the keys
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        store.observe(self._put)

    async def start(self) -> None:
        """Listen for changes, then load every key; returns once both are done."""
        self._listener = asyncio.create_task(self._listen(), name="propylon-key-listener")
        waiter = asyncio.create_task(self._listening.wait())
        done, _ = await asyncio.wait({waiter, self._listener}, return_when="FIRST_COMPLETED")
        if self._listener in done:
            waiter.cancel()
            await self._listener  # re-raise why listening failed
        await self.reload()

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    def __len__(self) -> int:
        return len(self._by_id)

    async def authenticate(self, token: str | None) -> Principal:
        """The principal of a bearer token: 401 when missing or unknown, 403 when revoked."""
        record = await self.lookup(token)
        if record.revoked:
            raise PermissionDenied(
                f"The API key {record.prefix}… has been revoked.", code="api_key_revoked"
            )
        return record.principal()

    async def lookup(self, token: str | None) -> KeyRecord:
        if not token:
            raise AuthenticationFailed(
                "No API key provided. Send `Authorization: Bearer <key>`.",
                code="missing_api_key",
            )
        if not looks_like_key(token):
            raise _unknown()
        digest = hash_key(token)
        record = self._by_hash.get(digest)
        if record is not None:
            return record
        if (
            not has_valid_check(token, self._secret)
            or self._misses.get(digest, 0.0) > time.monotonic()
        ):
            raise _unknown()
        try:
            found = await self._store.keys(key_hash=digest, timeout=self._lookup_timeout_s)
        except (psycopg.Error, OSError) as exc:  # PoolTimeout is a psycopg.Error
            log.warning("key lookup failed; answering 401", extra={"error": type(exc).__name__})
            raise _unknown() from None
        if not found:
            self._remember_miss(digest)
            raise _unknown()
        self._put(found[0])
        return found[0]

    def record(self, key_id: str) -> KeyRecord | None:
        return self._by_id.get(key_id)

    async def reload(self, *, key_id: str | None = None) -> None:
        """Reload one key, or all of them (and the key secret)."""
        records = await self._store.keys(key_id=key_id)
        if key_id is None:
            self._secret = await self._store.key_secret()
            self._by_hash = {r.key_hash: r for r in records}
            self._by_id = {r.id: r for r in records}
        else:
            for record in records:
                self._put(record)

    def _put(self, record: KeyRecord) -> None:
        self._by_hash[record.key_hash] = record
        self._by_id[record.id] = record
        self._misses.pop(record.key_hash, None)

    def _remember_miss(self, digest: bytes) -> None:
        if len(self._misses) >= _MAX_MISSES:
            now = time.monotonic()
            self._misses = {d: t for d, t in self._misses.items() if t > now}
            if len(self._misses) >= _MAX_MISSES:
                self._misses.clear()
        self._misses[digest] = time.monotonic() + _MISS_TTL_S

    async def _listen(self) -> None:
        delay = 0.1
        first = True
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(
                    self._store.database.url, autocommit=True
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if not first:
                        await self.reload()  # changes made while we were not listening
                    first = False
                    self._listening.set()
                    delay = 0.1
                    async for note in conn.notifies():
                        await self._on_notify(note.payload)
            except (psycopg.Error, OSError) as exc:
                if first:
                    raise
                log.warning(
                    "key change listener lost; reconnecting",
                    extra={"error": type(exc).__name__, "retry_in_s": delay},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)

    async def _on_notify(self, payload: str) -> None:
        kind, _, ident = payload.partition(":")
        if kind == "key" and ident:
            await self.reload(key_id=ident)
        else:
            await self.reload()


def _unknown() -> AuthenticationFailed:
    return AuthenticationFailed("Incorrect API key provided.", code="invalid_api_key")
