"""Open the configured database, or an embedded one started in the data directory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager

from propylon.db.database import Database
from propylon.db.embedded import EmbeddedPostgres
from propylon.settings import Settings


@asynccontextmanager
async def open_database(settings: Settings) -> AsyncIterator[Database]:
    """A pool on ``database_url``; without one, on PostgreSQL embedded in ``data_dir``."""
    async with AsyncExitStack() as stack:
        if settings.database_url is not None:
            url = settings.database_url.get_secret_value()
        else:
            embedded = EmbeddedPostgres(settings.data_dir)
            url = await embedded.start()
            stack.push_async_callback(embedded.stop)
        database = Database(
            url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            acquire_timeout_s=settings.db_acquire_timeout_s,
        )
        await database.open()
        stack.push_async_callback(database.close)
        yield database
