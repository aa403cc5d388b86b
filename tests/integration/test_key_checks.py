"""Keys are checked before the database: a forged key costs no lookup, a key this server made
but does not know costs one (then it is remembered as unknown), and every existing key —
including those made before the key secret existed — keeps working, across a rotation."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from propylon.access.keys import generate_key, hash_key, new_secret
from propylon.access.store import AccessStore
from propylon.db.database import Database
from propylon.db.migrator import migrate
from tests.support.servers import AppServer, serve_app
from tests.support.waiting import eventually


def unkeyed_key() -> str:
    """A key as made before the key secret: anyone could compute its check."""
    body = secrets.token_urlsafe(30)
    return "ppl_" + body + hashlib.sha256(b"propylon-key:" + body.encode()).hexdigest()[:6]


@pytest.fixture
async def old_key(database_url: str) -> str:
    """A key stored before this version: its check is the old unkeyed one."""
    key = unkeyed_key()
    db = Database(database_url)
    await db.open()
    try:
        await migrate(db)
        async with db.connection() as conn:
            cur = await conn.execute("INSERT INTO tenants (name) VALUES ('old') RETURNING id")
            tenant = await cur.fetchone()
            assert tenant is not None
            await conn.execute(
                "INSERT INTO api_keys (tenant_id, prefix, key_hash, features)"
                " VALUES (%s, %s, %s, ARRAY['chat', 'embeddings', 'rag'])",
                (tenant["id"], key[:12], hash_key(key)),
            )
    finally:
        await db.close()
    return key


@pytest.fixture
async def server(database_url: str, old_key: str) -> AsyncIterator[AppServer]:
    async with serve_app(database_url=database_url) as running:
        yield running


@pytest.fixture
def lookups(server: AppServer, monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every database lookup of a key by its hash (what an unknown token costs) from now on;
    reloads of known keys by id (a NOTIFY arriving late) are not lookups."""
    store: AccessStore = server.app.state.services.access
    made: list[Any] = []
    real: Callable[..., Awaitable[Any]] = store.keys

    async def counting(**kwargs: Any) -> Any:
        if kwargs.get("key_hash") is not None:
            made.append(kwargs)
        return await real(**kwargs)

    monkeypatch.setattr(store, "keys", counting)
    return made


async def models_status(http: aiohttp.ClientSession, server: AppServer, key: str) -> int:
    async with http.get(f"{server.v1}/models", headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status


async def test_forged_keys_are_refused_without_a_lookup(
    server: AppServer, lookups: list[Any]
) -> None:
    forged = [unkeyed_key() for _ in range(150)] + [generate_key(new_secret()) for _ in range(150)]
    async with aiohttp.ClientSession() as http:
        statuses = [await models_status(http, server, key) for key in forged]
    assert statuses == [401] * 300
    assert lookups == []


async def test_an_unknown_key_with_a_valid_check_is_looked_up_once(
    server: AppServer, lookups: list[Any]
) -> None:
    store: AccessStore = server.app.state.services.access
    unknown = generate_key(await store.key_secret())
    async with aiohttp.ClientSession() as http:
        assert [await models_status(http, server, unknown) for _ in range(20)] == [401] * 20
    assert len(lookups) == 1  # then remembered as unknown


async def test_old_and_new_keys_keep_working_across_a_secret_rotation(
    server: AppServer, old_key: str, lookups: list[Any]
) -> None:
    store: AccessStore = server.app.state.services.access
    before = await store.key_secret()
    made_before, _ = await store.create_key("acme")
    generation = await store.rotate_key_secret()
    assert generation == 2
    after = await store.key_secret()
    assert after != before
    made_after, _ = await store.create_key("acme")
    async with aiohttp.ClientSession() as http:
        for key in (old_key, made_before, made_after, server.api_key):
            assert await models_status(http, server, key) == 200

        # Once the server has the new secret, a key checked under the old one is forged.
        async def refused_without_lookup() -> bool | None:
            lookups.clear()
            stale = generate_key(before)  # a new one each time: misses are remembered
            assert await models_status(http, server, stale) == 401
            return True if not lookups else None  # else the rotation's NOTIFY is still coming

        await eventually(refused_without_lookup, "the rotated secret to reach the server")
        assert lookups == []
