"""The durable job queue in one process: states, retries, poison jobs, cancellation, leases."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest

from propylon.errors import NotFound
from propylon.jobs import store
from propylon.jobs.context import RunningJob
from propylon.jobs.feeds import JobFeeds
from propylon.jobs.handler import JobContext, LeaseLost
from tests.support.job_rig import TENANT, JobRig
from tests.support.job_rig import rig as rig  # the fixture


async def test_job_goes_from_queued_through_running_to_succeeded_with_its_result(
    rig: JobRig,
) -> None:
    job_id = await rig.enqueue("echo", {"x": 1}, collection_id="c1")
    queued = await rig.queue.get(TENANT, job_id)
    assert (queued.state, queued.attempts, queued.collection_id) == ("queued", 0, "c1")
    async with rig.worker():
        done = await rig.finished(job_id)
    assert done.state == "succeeded"
    assert done.result == {"echo": {"x": 1}, "attempt": 1}
    assert done.attempts == 1
    assert {"queued", "running", "succeeded"} <= set(done.stages)
    assert done.started_at is not None and done.finished_at is not None
    body = done.to_dict()
    assert body["object"] == "job" and body["progress"]["fraction"] == 1.0


async def test_another_tenants_job_is_not_found(rig: JobRig) -> None:
    job_id = await rig.enqueue("echo")
    with pytest.raises(NotFound):
        await rig.queue.get("tenant-b", job_id)
    with pytest.raises(NotFound):
        await rig.queue.cancel("tenant-b", job_id)
    with pytest.raises(NotFound):
        await rig.queue.get(TENANT, "not-a-uuid")
    assert (await rig.queue.get(TENANT, job_id)).state == "queued"


async def test_retryable_failures_retry_with_backoff_then_succeed(rig: JobRig) -> None:
    job_id = await rig.enqueue("flaky", {"failures": 2}, max_attempts=3)
    async with rig.worker(retry_base_s=0.3):
        done = await rig.finished(job_id)
    assert (done.state, done.attempts, done.result) == ("succeeded", 3, {"attempt": 3})
    runs = await rig.runs(job_id)
    gaps = [(b["at"] - a["at"]).total_seconds() for a, b in itertools.pairwise(runs)]
    # Backoff doubles from retry_base_s (jittered down to 75 % at most).
    assert gaps[0] >= 0.3 * 0.75
    assert gaps[1] >= 0.6 * 0.75


async def test_poison_job_fails_with_its_reason_after_max_attempts_and_blocks_nothing_else(
    rig: JobRig,
) -> None:
    poison = await rig.enqueue("poison", max_attempts=3)
    others = [await rig.enqueue("echo", {"n": n}) for n in range(5)]
    async with rig.worker(concurrency=1, retry_base_s=0.05):
        done = await rig.finished(poison)
        finished = [await rig.finished(job_id) for job_id in others]
    assert done.state == "failed"
    assert done.attempts == 3
    assert done.reason == "ValueError: corrupt xref table at byte 1234"
    assert [v.state for v in finished] == ["succeeded"] * 5


async def test_a_result_or_reason_quoting_a_nul_is_stored_escaped_not_a_stuck_job(
    rig: JobRig,
) -> None:
    """A result, progress message or failure reason is kept whatever it quotes: a NUL or a
    lone surrogate there made the write fail, and the job sat "running" until its lease ran
    out, again on every attempt."""
    quoted = await rig.enqueue("echo", {"quote_nul": True}, max_attempts=1)
    failing = await rig.enqueue("poison", {"quote_nul": True}, max_attempts=1)
    async with rig.worker():
        done = await rig.finished(quoted)
        failed = await rig.finished(failing)
    assert (done.state, done.attempts) == ("succeeded", 1)
    assert done.result == {"quoted": {"text": ["a\\u0000b\\udc80"]}, "attempt": 1}
    assert (failed.state, failed.attempts) == ("failed", 1)
    assert failed.reason == "ValueError: corrupt text 'a\\u0000b' at byte 1234"


async def test_a_job_failed_error_fails_at_once_without_retrying(rig: JobRig) -> None:
    job_id = await rig.enqueue("give_up", max_attempts=5)
    async with rig.worker():
        done = await rig.finished(job_id)
    assert (done.state, done.attempts) == ("failed", 1)
    assert done.reason == "the document has no extractable text"


async def test_cancelling_a_queued_job_means_it_never_runs(rig: JobRig) -> None:
    job_id = await rig.enqueue("echo")
    view = await rig.queue.cancel(TENANT, job_id)
    assert view.state == "cancelled" and "cancelled" in view.stages
    later = await rig.enqueue("echo")  # claimed after the cancelled one would have been
    async with rig.worker(concurrency=1):
        await rig.finished(later)
    assert await rig.runs(job_id) == []
    # Cancelling again, or a finished job, changes nothing.
    assert (await rig.queue.cancel(TENANT, job_id)).seq == view.seq


async def test_cancelling_a_running_job_stops_it_promptly(rig: JobRig) -> None:
    job_id = await rig.enqueue("block")
    # Heartbeats an hour apart: the worker can only learn of the cancel from its NOTIFY.
    async with rig.worker(heartbeat_s=3600, lease_s=7200):
        await asyncio.wait_for(rig.gates.started.wait(), 10)
        view = await rig.queue.cancel(TENANT, job_id)
    assert view.state == "cancelled"
    assert view.cancel_requested
    assert rig.gates.cleaned_up.is_set()


async def test_a_job_of_a_lost_worker_is_requeued_and_run_by_another(rig: JobRig) -> None:
    job_id = await rig.enqueue("echo")
    # A worker claims the job, then goes silent (as if killed): it never renews its lease.
    async with rig.database.connection() as conn:
        claimed = await store.change_one(
            conn,
            "claim",
            {"worker_id": "ghost", "lease_s": 0.3, "kinds": ["echo"], "tenant_cap": None},
            "state",
        )
    assert claimed is not None and claimed.id == job_id
    async with rig.worker():
        done = await rig.finished(job_id)
    assert (done.state, done.attempts) == ("succeeded", 2)


async def test_a_worker_that_lost_its_lease_cannot_complete_the_job(rig: JobRig) -> None:
    job_id = await rig.enqueue("echo")
    async with rig.database.connection() as conn:
        claimed = await store.change_one(
            conn,
            "claim",
            {"worker_id": "slow", "lease_s": -1, "kinds": ["echo"], "tenant_cap": None},
            "state",
        )  # a lease that has already run out: the worker went quiet
    assert claimed is not None
    ghost: JobContext = RunningJob(claimed, rig.database, worker_id="slow", progress_interval_s=0)
    async with rig.database.connection() as conn:
        reaped = await store.change(conn, "reap", {}, "state")
    assert [v.state for v in reaped] == ["queued"]
    with pytest.raises(LeaseLost):
        async with rig.database.connection() as conn:
            await ghost.complete_in(conn, {"too": "late"})
    with pytest.raises(LeaseLost):
        await ghost.progress(stage="parsing", fraction=0.5)
    assert (await rig.queue.get(TENANT, job_id)).state == "queued"


async def test_a_job_that_keeps_killing_its_worker_fails_after_max_attempts(rig: JobRig) -> None:
    job_id = await rig.enqueue("echo", max_attempts=2)
    for _ in range(2):
        async with rig.database.connection() as conn:
            assert await store.change_one(
                conn,
                "claim",
                {"worker_id": "doomed", "lease_s": -1, "kinds": ["echo"], "tenant_cap": None},
                "state",
            )  # its lease has already run out
        async with rig.database.connection() as conn:
            await store.change(conn, "reap", {}, "state")
    view = await rig.queue.get(TENANT, job_id)
    assert (view.state, view.attempts) == ("failed", 2)
    assert view.reason == "worker lost (lease expired) during attempt 2"


async def test_a_stopping_worker_hands_unfinished_jobs_back_without_spending_an_attempt(
    rig: JobRig,
) -> None:
    job_id = await rig.enqueue("block")
    async with rig.worker(shutdown_grace_s=0.1):
        await asyncio.wait_for(rig.gates.started.wait(), 10)
    view = await rig.queue.get(TENANT, job_id)
    assert (view.state, view.attempts) == ("queued", 0)
    assert rig.gates.cleaned_up.is_set()


async def test_dedupe_key_returns_the_live_job_instead_of_a_second_one(rig: JobRig) -> None:
    first = await rig.enqueue("echo", dedupe_key="doc-1")
    assert await rig.enqueue("echo", dedupe_key="doc-1") == first
    assert await rig.enqueue("echo", dedupe_key="doc-2") != first
    async with rig.worker():
        await rig.finished(first)
    assert await rig.enqueue("echo", dedupe_key="doc-1") != first  # finished: a new run


async def test_workers_claim_only_the_kinds_they_have_handlers_for(rig: JobRig) -> None:
    other = await rig.enqueue("someone-elses-kind")
    mine = await rig.enqueue("echo")  # younger: the worker has looked past `other` to reach it
    async with rig.worker(concurrency=1):
        await rig.finished(mine)
    assert (await rig.queue.get(TENANT, other)).state == "queued"


async def test_enqueue_inside_the_callers_transaction_is_atomic_with_it(rig: JobRig) -> None:
    async def enqueue_then_fail() -> None:
        async with rig.database.connection() as conn:
            await rig.queue.enqueue(tenant_id=TENANT, kind="echo", payload={}, conn=conn)
            raise RuntimeError("the caller's own write failed")

    with pytest.raises(RuntimeError):
        await enqueue_then_fail()
    async with rig.database.connection() as conn:
        cur = await conn.execute("SELECT count(*) AS n FROM jobs")
        assert (await cur.fetchone() or {})["n"] == 0


async def test_a_worker_without_handlers_claims_nothing_but_still_reaps(rig: JobRig) -> None:
    job_id = await rig.enqueue("echo")
    async with rig.database.connection() as conn:
        await store.change_one(
            conn,
            "claim",
            {"worker_id": "ghost", "lease_s": 0.01, "kinds": ["echo"], "tenant_cap": None},
            "state",
        )
    async with rig.worker(handlers={}):
        view = await rig.queue.wait(TENANT, job_id, 0.5)
    assert (view.state, view.attempts) == ("queued", 1)  # requeued by the reaper, not run


async def test_a_follower_misses_nothing_when_the_listening_connection_drops(rig: JobRig) -> None:
    job_id = await rig.enqueue("steps", {"stages": ["parsing", "embedding"]})
    feeds = JobFeeds(rig.queue, rig.hub)
    seen: list[dict[str, Any]] = []

    async def follow() -> None:
        async for event in feeds.follow_job(TENANT, job_id):
            seen.append(event)

    async with rig.worker():
        follower = asyncio.create_task(follow())
        rig.gates.gate("parsing").set()
        async with rig.database.connection() as conn:  # the hub's LISTEN connection dies
            await conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
            )
        rig.gates.gate("embedding").set()
        await asyncio.wait_for(follower, 20)
    final = seen[-1].get("state") or seen[-1]["job"]["state"]
    assert final == "succeeded"
    assert seen[0]["type"] == "snapshot"
