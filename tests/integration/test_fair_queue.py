"""Workers claim fairly across tenants: one tenant's backlog of 1,000 jobs delays another
tenant's single job by about one job, not by the whole backlog; with a per-tenant cap, a tenant
never holds more running jobs than it allows, so the others always find a free slot."""

from __future__ import annotations

import json

from tests.support.job_rig import JobRig
from tests.support.job_rig import rig as rig  # the fixture

BACKLOG = 1000


async def backlog(rig: JobRig, tenant: str, kind: str, payload: dict[str, float]) -> None:
    """``BACKLOG`` queued jobs of ``tenant``, older than anything enqueued after."""
    async with rig.database.connection() as conn:
        await conn.execute(
            "INSERT INTO jobs (tenant_id, kind, payload, created_at, run_after)"
            " SELECT %s, %s, %s::jsonb, now() - interval '1 hour' + n * interval '1 ms',"
            "        now() - interval '1 hour'"
            " FROM generate_series(1, %s) AS n",
            (tenant, kind, json.dumps(payload), BACKLOG),
        )


async def running_of(rig: JobRig, tenant: str) -> int:
    async with rig.database.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) AS n FROM jobs WHERE tenant_id = %s AND state = 'running'",
            (tenant,),
        )
        row = await cur.fetchone()
    assert row is not None
    n: int = row["n"]
    return n


async def test_a_backlog_of_1000_jobs_delays_another_tenants_job_by_about_one_job(
    rig: JobRig,
) -> None:
    # Each backlog job takes 0.5 s: first come, first served, the newcomer would wait
    # 1,000 × 0.5 s / 4 slots = 125 s.
    await backlog(rig, "tenant-a", "sleep", {"seconds": 0.5})
    async with rig.worker(concurrency=4):
        job_id = await rig.enqueue("echo", tenant_id="tenant-b")
        done = await rig.queue.wait("tenant-b", job_id, 15)
        assert done.state == "succeeded", "the newcomer waited behind the backlog"
        assert await running_of(rig, "tenant-a") <= 4


async def test_a_tenant_cap_keeps_slots_free_for_other_tenants(rig: JobRig) -> None:
    # The backlog's jobs never end on their own: without the cap they would hold every slot.
    await backlog(rig, "tenant-a", "block", {})
    async with rig.worker(concurrency=4, tenant_concurrency=2):
        await rig.gates.started.wait()
        job_id = await rig.enqueue("echo", tenant_id="tenant-b")
        done = await rig.queue.wait("tenant-b", job_id, 15)
        assert done.state == "succeeded"
        assert await running_of(rig, "tenant-a") == 2
