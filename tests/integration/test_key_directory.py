"""Revocation reaches every replica: a notification during the first load is not lost, a
missed notification is caught by the periodic reload, a killed LISTEN connection is replaced."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from propylon.access.directory import KeyDirectory
from propylon.access.keys import KeyRecord
from propylon.access.store import AccessStore
from propylon.db.database import Database
from propylon.errors import PermissionDenied
from tests.support.databases import terminate_key_listeners


class WatchedStore(AccessStore):
    """An ``AccessStore`` whose reads a test can hold and watch."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.snapshot_read = asyncio.Event()
        self.install_snapshot = asyncio.Event()
        self.install_snapshot.set()
        self.key_reloaded = asyncio.Event()
        self.full_loads = 0
        self.full_load_done = asyncio.Condition()

    async def keys(self, **where: Any) -> list[KeyRecord]:
        records = await super().keys(**where)
        if where.get("key_id") is not None:
            self.key_reloaded.set()
        elif not any(where.values()):
            self.snapshot_read.set()
            await self.install_snapshot.wait()
            async with self.full_load_done:
                self.full_loads += 1
                self.full_load_done.notify_all()
        return records

    async def wait_full_loads(self, count: int) -> None:
        async with asyncio.timeout(30), self.full_load_done:
            await self.full_load_done.wait_for(lambda: self.full_loads >= count)


async def test_a_revocation_notified_during_the_first_load_is_not_undone_by_it(
    database: Database,
) -> None:
    writer = AccessStore(database)
    key, record = await writer.create_key("race")
    store = WatchedStore(database)
    store.install_snapshot.clear()
    directory = KeyDirectory(store)
    starting = asyncio.create_task(directory.start())
    try:
        async with asyncio.timeout(30):
            await store.snapshot_read.wait()  # read while the key was still valid...
            await writer.revoke(record.id)
            await store.key_reloaded.wait()  # ...and its revocation notified meanwhile
        store.install_snapshot.set()
        await starting
        with pytest.raises(PermissionDenied):
            await directory.authenticate(key)
    finally:
        store.install_snapshot.set()
        await directory.close()


async def test_a_change_whose_notification_was_missed_is_seen_at_the_next_full_reload(
    database: Database,
) -> None:
    store = WatchedStore(database)
    key, record = await store.create_key("silent")
    directory = KeyDirectory(store, reload_s=0.05)
    await directory.start()
    try:
        await directory.authenticate(key)
        async with database.connection() as conn:  # no NOTIFY: as if it had been lost
            await conn.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", (record.id,))
        await store.wait_full_loads(store.full_loads + 2)
        with pytest.raises(PermissionDenied):
            await directory.authenticate(key)
    finally:
        await directory.close()


async def test_a_killed_listen_connection_is_replaced_and_revocations_still_arrive(
    database: Database, database_url: str
) -> None:
    store = WatchedStore(database)
    key, record = await store.create_key("killed")
    directory = KeyDirectory(store)
    await directory.start()
    try:
        loads = store.full_loads
        killed = await terminate_key_listeners(database_url)
        assert killed == 1, "one LISTEN connection, with keepalives, by its application name"
        await store.wait_full_loads(loads + 1)  # reconnected: a full reload, then listening
        store.key_reloaded.clear()
        await AccessStore(database).revoke(record.id)  # another process's change
        async with asyncio.timeout(30):
            await store.key_reloaded.wait()
        with pytest.raises(PermissionDenied):
            await directory.authenticate(key)
    finally:
        await directory.close()
