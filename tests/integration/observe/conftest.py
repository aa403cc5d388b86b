"""Fixtures of the observability tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from propylon.db.database import Database
from propylon.db.migrator import migrate


@pytest.fixture
async def migrated_database(database_url: str) -> AsyncIterator[Database]:
    """An open pool on the test database, migrated; closed afterwards."""
    database = Database(database_url)
    await database.open()
    try:
        await migrate(database)
        yield database
    finally:
        await database.close()
