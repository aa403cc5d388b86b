"""A run queued by a key that is revoked before a worker reaches it is cancelled, not run: the
model is never called on the revoked key's behalf. Revoked through the admin API or by
`propylon keys revoke` (another process), the key's queued runs are cancelled at once, by the
same ``KeyRevocation``; a run that escaped that (claimed in between, or a revocation written
by an older release) is refused by the worker that reaches it."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

import aiohttp
import pytest

from propylon.access.store import AccessStore
from propylon.app import job_handlers, running_worker
from propylon.jobs.progress import ProgressHub
from propylon.jobs.worker import Worker
from propylon.services import Services
from propylon.testing import FakeUpstream
from tests.support.servers import serve_app

CHAT = {
    "type": "chat",
    "request": {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
}


def models(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [
        {
            "name": "gpt-test",
            "deployments": [{"provider": "openai", "base_url": f"{upstream.base_url}/v1"}],
        }
    ]


async def test_a_run_of_a_key_revoked_elsewhere_is_cancelled_by_the_worker_unrun(
    database_url: str, upstream: FakeUpstream
) -> None:
    jobs = {"in_process_worker": False, "poll_interval_s": 0.2}
    async with serve_app(database_url=database_url, models=models(upstream), jobs=jobs) as server:
        services: Services = server.app.state.services
        key, record = await services.access.create_key("acme")
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(f"{server.v1}/runs", json=CHAT) as resp:
                assert resp.status == 202
                run: dict[str, Any] = await resp.json()
            assert run["state"] == "queued"
            # Only the key's row, from another process: its runs are left to the workers.
            await AccessStore(services.database).revoke(record.id)

            hub = ProgressHub(database_url)
            await hub.start()
            try:
                worker = Worker(
                    services.database, hub, job_handlers(services), services.settings.jobs
                )
                async with running_worker(worker):
                    view = await services.jobs.wait(record.tenant_id, run["job_id"], 30)
            finally:
                await hub.close()
        final = await services.runs.get(record.tenant_id, run["id"])
    assert view.state == "failed"
    assert final["state"] == "cancelled"
    assert "revoked" in final["error"]
    assert upstream.calls.get("/v1/chat/completions", 0) == 0


async def revoke_with_the_cli(database_url: str, key_id: str) -> None:
    """`propylon keys revoke` in its own process, on the server's database."""
    env = {**os.environ, "DATABASE_URL": database_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "propylon",
        "keys",
        "revoke",
        key_id,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert key_id in out.decode()


@pytest.mark.parametrize("by", ["api", "cli"])
async def test_revoking_a_key_cancels_its_queued_runs_at_once(
    database_url: str, upstream: FakeUpstream, by: str
) -> None:
    jobs = {"in_process_worker": False}
    async with serve_app(
        database_url=database_url, models=models(upstream), jobs=jobs, admin_key="admin-for-revoke"
    ) as server:
        services: Services = server.app.state.services
        key, record = await services.access.create_key("acme")
        other, _ = await services.access.create_key("acme")
        runs: list[dict[str, Any]] = []
        async with aiohttp.ClientSession() as http:
            for owner in (key, key, other):
                async with http.post(
                    f"{server.v1}/runs", json=CHAT, headers={"Authorization": f"Bearer {owner}"}
                ) as resp:
                    assert resp.status == 202
                    runs.append(await resp.json())
            if by == "cli":
                await revoke_with_the_cli(database_url, record.id)
            else:
                async with http.post(
                    f"{server.url}/admin/keys/{record.id}/revoke",
                    headers={"Authorization": "Bearer admin-for-revoke"},
                ) as resp:
                    assert resp.status == 200
        states = [(await services.runs.get(record.tenant_id, r["id"])) for r in runs]
    assert [s["state"] for s in states] == ["cancelled", "cancelled", "queued"]
    assert "revoked" in states[0]["error"]
