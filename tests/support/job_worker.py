"""`python -m tests.support.job_worker`: a real worker process running the test handlers.

Configured like `propylon worker` (``DATABASE_URL``, ``PROPYLON_JOBS__*``); used by the
end-to-end tests that kill workers with SIGKILL.
"""

from __future__ import annotations

import asyncio

from propylon.app import run_worker
from propylon.jobs.handler import Handlers
from propylon.observe.logging import configure_logging
from propylon.services import Services
from propylon.settings import load_settings
from tests.support.job_handlers import handlers_for_tests


def _handlers(services: Services) -> Handlers:
    return handlers_for_tests(services.database)


def main() -> None:
    settings = load_settings()
    configure_logging(settings.log_level)
    asyncio.run(run_worker(settings, handlers=_handlers))


if __name__ == "__main__":
    main()
