"""The background worker process: connects to the database and runs jobs until told to stop."""

from __future__ import annotations

import asyncio
import logging
import signal

from propylon.db.connect import open_database
from propylon.db.migrator import migrate
from propylon.settings import Settings

log = logging.getLogger(__name__)


async def run_worker(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run until SIGTERM/SIGINT (or ``stop`` is set), then shut down cleanly."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        async with open_database(settings) as database:
            await migrate(database)
            log.info("worker ready")
            await stop.wait()
            log.info("worker stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
