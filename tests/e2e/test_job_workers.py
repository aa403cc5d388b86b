"""Real worker processes on one database: SIGKILL in the middle of a run, SIGTERM, sharing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from tests.support.job_rig import TENANT, JobRig
from tests.support.job_rig import rig as rig  # the fixture

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
JOBS = 50


@asynccontextmanager
async def worker_process(
    database_url: str, log: Path, **jobs: object
) -> AsyncIterator[asyncio.subprocess.Process]:
    """`python -m tests.support.job_worker`: a real worker with the test handlers."""
    env = {**os.environ, "DATABASE_URL": database_url}
    settings = {"lease_s": 2, "heartbeat_s": 0.4, "reap_interval_s": 0.5, "poll_interval_s": 0.5}
    for name, value in {**settings, **jobs}.items():
        env[f"PROPYLON_JOBS__{name.upper()}"] = str(value)
    with open(log, "wb") as out:  # noqa: ASYNC230
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.job_worker",
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )
        try:
            yield proc
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


async def count(rig: JobRig, sql: str) -> int:
    async with rig.database.connection() as conn:
        cur = await conn.execute(sql)
        row = await cur.fetchone()
        return int(row["n"]) if row else 0


async def wait_for(rig: JobRig, sql: str, at_least: int, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while await count(rig, sql) < at_least:
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {sql}"
        await asyncio.sleep(0.02)


async def wait_ready(log: Path, timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while b"worker ready" not in await asyncio.to_thread(log.read_bytes):
        assert asyncio.get_running_loop().time() < deadline, "worker never became ready"
        await asyncio.sleep(0.05)


COMPLETIONS = "SELECT count(*) AS n FROM test_job_completions"
RUNNING = "SELECT count(*) AS n FROM jobs WHERE state = 'running'"
FINISHED = "SELECT count(*) AS n FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled')"


async def test_killing_a_worker_mid_run_loses_no_job_and_completes_none_twice(
    rig: JobRig, database_url: str, tmp_path: Path
) -> None:
    ids = [await rig.enqueue("sleep", {"seconds": 0.15}) for _ in range(JOBS)]

    async with worker_process(database_url, tmp_path / "a.log", concurrency=4) as first:
        await wait_for(rig, COMPLETIONS, 10)
        await wait_for(rig, RUNNING, 1)
        first.send_signal(signal.SIGKILL)
        await first.wait()
    orphans = await count(rig, RUNNING)
    assert orphans >= 1  # jobs were in flight when the worker died
    assert await count(rig, COMPLETIONS) < JOBS

    async with worker_process(database_url, tmp_path / "b.log", concurrency=4):
        await wait_for(rig, FINISHED, JOBS)

    views = [await rig.queue.get(TENANT, job_id) for job_id in ids]
    assert [v.state for v in views] == ["succeeded"] * JOBS
    async with rig.database.connection() as conn:
        cur = await conn.execute(
            "SELECT job_id, count(*) AS n FROM test_job_completions GROUP BY job_id"
        )
        completions = {str(r["job_id"]): r["n"] for r in await cur.fetchall()}
    assert completions == dict.fromkeys(ids, 1)  # every job completed, none twice
    rerun = [v for v in views if v.attempts > 1]
    assert len(rerun) >= orphans  # the killed worker's jobs ran again on the new one


async def test_sigterm_lets_a_worker_hand_back_its_jobs_and_exit_cleanly(
    rig: JobRig, database_url: str, tmp_path: Path
) -> None:
    ids = [await rig.enqueue("sleep", {"seconds": 30}) for _ in range(2)]
    log = tmp_path / "w.log"
    async with worker_process(database_url, log, shutdown_grace_s=0.5) as proc:
        await wait_for(rig, RUNNING, 2)
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0, log.read_text()
    views = [await rig.queue.get(TENANT, job_id) for job_id in ids]
    assert [(v.state, v.attempts) for v in views] == [("queued", 0)] * 2


async def test_two_workers_share_the_queue_and_run_each_job_once(
    rig: JobRig, database_url: str, tmp_path: Path
) -> None:
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    async with (
        worker_process(database_url, logs[0], concurrency=3),
        worker_process(database_url, logs[1], concurrency=3),
    ):
        for log in logs:
            await wait_ready(log)
        ids = [await rig.enqueue("sleep", {"seconds": 0.05}) for _ in range(JOBS)]
        await wait_for(rig, FINISHED, JOBS)
    async with rig.database.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n, count(DISTINCT job_id) AS jobs, "
            "(SELECT count(*) FROM test_job_runs) AS runs FROM test_job_completions"
        )
        row = await cur.fetchone()
        cur = await conn.execute("SELECT count(DISTINCT worker_id) AS n FROM jobs")
        workers = await cur.fetchone()
    assert row is not None and workers is not None
    assert (row["n"], row["jobs"], row["runs"]) == (JOBS, JOBS, JOBS)
    assert workers["n"] == 2
    assert {(await rig.queue.get(TENANT, i)).state for i in ids} == {"succeeded"}
