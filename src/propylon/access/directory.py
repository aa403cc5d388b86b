"""``KeyDirectory``: every key in memory, kept current by LISTEN/NOTIFY; authenticates tokens.

At start it LISTENs on ``propylon_access``, then loads every key. Each change made by any
process (another replica, the CLI) arrives as a notification and reloads that key, so a
revocation is refused by every replica within milliseconds. Three things keep that true when
the listening connection fails:

* TCP keepalives on it, so a connection that died silently (a dropped NAT entry, a failed
  over database) is noticed in seconds, not the two hours of the kernel's default;
* a lost connection is reopened in the background, with a full reload;
* a full reload every ``reload_s`` whatever happens, bounding how long any missed
  notification can go unseen.

Notifications that arrive while a full load runs are applied again after it: the snapshot may
have been read before their change committed, and installing it must not resurrect a key
revoked meanwhile.

Why a full snapshot rather than a short cache: authentication never waits on the database,
and an unknown key gets 401 even while the database is down. A well-formed key missing from
the snapshot (created a moment ago, before its notification arrived) is looked up once; if
that lookup fails because the database is down, the key is treated as unknown (401): the
snapshot was complete up to the outage, so a key it lacks cannot have been usable.
"""

from __future__ import annotations

import asyncio
import logging
import time

import psycopg
from psycopg.conninfo import make_conninfo

from propylon.access.keys import KeyRecord, has_valid_check, hash_key, looks_like_key
from propylon.access.store import CHANNEL, AccessStore
from propylon.background import stop_tasks
from propylon.errors import AuthenticationFailed, PermissionDenied
from propylon.principal import Principal

log = logging.getLogger(__name__)

_MISS_TTL_S = 5.0
_MAX_MISSES = 10_000


# libpq keepalives on the LISTEN connection: a dead peer is noticed after about
# idle + interval * count = 15 s instead of the kernel's default of about two hours.
_KEEPALIVES: dict[str, str | int] = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 5,
    "application_name": "propylon-key-listener",
}


class KeyDirectory:
    def __init__(
        self, store: AccessStore, *, lookup_timeout_s: float = 1.0, reload_s: float = 30.0
    ) -> None:
        self._store = store
        self._lookup_timeout_s = lookup_timeout_s
        self._reload_s = reload_s
        self._by_hash: dict[bytes, KeyRecord] = {}
        self._by_id: dict[str, KeyRecord] = {}
        self._misses: dict[bytes, float] = {}
        self._secret = b""  # the key secret, loaded with the keys
        self._listener: asyncio.Task[None] | None = None
        self._reloader: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()
        self._full_load = asyncio.Lock()
        self._changed_during_load: set[str] | None = None  # key ids; None: no full load
        store.observe(self._put_observed)

    async def start(self) -> None:
        """Listen for changes, then load every key; returns once both are done."""
        self._listener = asyncio.create_task(self._listen(), name="propylon-key-listener")
        waiter = asyncio.create_task(self._listening.wait())
        done, _ = await asyncio.wait({waiter, self._listener}, return_when="FIRST_COMPLETED")
        if self._listener in done:
            waiter.cancel()
            await self._listener  # re-raise why listening failed
        await self.reload()
        self._reloader = asyncio.create_task(self._reload_every(), name="propylon-key-reloader")

    async def close(self) -> None:
        await stop_tasks(self._reloader, self._listener)

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
        if key_id is not None:
            if self._changed_during_load is not None:
                self._changed_during_load.add(key_id)
            for record in await self._store.keys(key_id=key_id):
                self._put(record)
            return
        async with self._full_load:
            self._changed_during_load = set()
            try:
                records = await self._store.keys()
                self._secret = await self._store.key_secret()
                self._by_hash = {r.key_hash: r for r in records}
                self._by_id = {r.id: r for r in records}
            finally:
                changed, self._changed_during_load = self._changed_during_load, None
            for changed_id in sorted(changed):  # read again: the snapshot may predate them
                for record in await self._store.keys(key_id=changed_id):
                    self._put(record)

    def _put_observed(self, record: KeyRecord) -> None:
        """A change this process made: applied now, and again after a full load in flight."""
        if self._changed_during_load is not None:
            self._changed_during_load.add(record.id)
        self._put(record)

    async def _reload_every(self) -> None:
        while True:
            await asyncio.sleep(self._reload_s)
            try:
                await self.reload()
            except (psycopg.Error, OSError) as exc:
                log.warning("periodic key reload failed", extra={"error": type(exc).__name__})

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
                    make_conninfo(self._store.database.url, **_KEEPALIVES), autocommit=True
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
