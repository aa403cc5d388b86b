"""The job queue wired in the test's event loop on a fresh database: queue, hub, workers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from propylon.app import running_worker
from propylon.db.database import Database
from propylon.db.migrator import migrate
from propylon.jobs.handler import Handlers
from propylon.jobs.progress import ProgressHub
from propylon.jobs.queue import JobQueue
from propylon.jobs.worker import Worker
from propylon.settings import JobsSettings
from tests.support.job_handlers import RECORD_TABLES, Gates, handlers_for_tests

TENANT = "tenant-a"

# Short leases and intervals so recovery happens within a test's patience.
FAST = JobsSettings(
    lease_s=1.0,
    heartbeat_s=0.2,
    reap_interval_s=0.2,
    poll_interval_s=0.5,
    retry_base_s=0.2,
    retry_max_s=1.0,
    shutdown_grace_s=0.5,
    cancel_wait_s=30.0,  # generous: a cancel answers as soon as the job has stopped
    progress_interval_s=0.0,
)
# An app's jobs settings when its in-process worker ingests what a test uploads: fast, with a
# lease long enough that a loaded machine does not hand a parse to a second attempt.
IN_PROCESS = {**FAST.model_dump(), "lease_s": 10.0, "in_process_worker": True}


@dataclass
class JobRig:
    database: Database
    hub: ProgressHub
    queue: JobQueue
    gates: Gates

    def handlers(self) -> Handlers:
        return handlers_for_tests(self.database, self.gates)

    @asynccontextmanager
    async def worker(
        self, handlers: Handlers | None = None, **settings: Any
    ) -> AsyncIterator[Worker]:
        config = FAST.model_copy(update=settings)
        table = self.handlers() if handlers is None else handlers
        worker = Worker(self.database, self.hub, table, config)
        async with running_worker(worker):
            yield worker

    async def enqueue(self, kind: str, payload: dict[str, Any] | None = None, **kw: Any) -> str:
        kw.setdefault("tenant_id", TENANT)
        return await self.queue.enqueue(kind=kind, payload=payload or {}, **kw)

    async def finished(self, job_id: str, timeout: float = 20.0) -> Any:
        view = await self.queue.wait(TENANT, job_id, timeout)
        assert view.terminal, f"job {job_id} still {view.state} after {timeout} s"
        return view

    async def runs(self, job_id: str) -> list[dict[str, Any]]:
        async with self.database.connection() as conn:
            cur = await conn.execute(
                "SELECT attempt, at, outcome FROM test_job_runs WHERE job_id = %s ORDER BY at",
                (job_id,),
            )
            return list(await cur.fetchall())


@asynccontextmanager
async def job_rig(database_url: str) -> AsyncIterator[JobRig]:
    database = Database(database_url, max_size=20)
    await database.open()
    hub = ProgressHub(database_url)
    try:
        await migrate(database)
        async with database.connection() as conn:
            await conn.execute(RECORD_TABLES)
        await hub.start()
        yield JobRig(database, hub, JobQueue(database, hub, cancel_wait_s=30.0), Gates())
    finally:
        await hub.close()
        await database.close()


@pytest.fixture
async def rig(database_url: str) -> AsyncIterator[JobRig]:
    """The job queue on a fresh database (import this fixture into a test module)."""
    async with job_rig(database_url) as rig:
        yield rig
