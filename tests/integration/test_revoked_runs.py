"""A run queued by a key that is revoked before a worker reaches it is cancelled, not run: the
model is never called on the revoked key's behalf."""

from __future__ import annotations

from typing import Any

import aiohttp

from propylon.app import job_handlers, running_worker
from propylon.jobs.progress import ProgressHub
from propylon.jobs.worker import Worker
from propylon.services import Services
from propylon.testing import FakeUpstream
from tests.support.servers import serve_app


async def test_a_revoked_keys_queued_run_is_cancelled_without_calling_the_model(
    database_url: str, upstream: FakeUpstream
) -> None:
    models = [
        {
            "name": "gpt-test",
            "deployments": [{"provider": "openai", "base_url": f"{upstream.base_url}/v1"}],
        }
    ]
    jobs = {"in_process_worker": False, "poll_interval_s": 0.2}
    async with serve_app(database_url=database_url, models=models, jobs=jobs) as server:
        services: Services = server.app.state.services
        key, record = await services.access.create_key("acme")
        body = {
            "type": "chat",
            "request": {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
        }
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            async with http.post(f"{server.v1}/runs", json=body) as resp:
                assert resp.status == 202
                run: dict[str, Any] = await resp.json()
            assert run["state"] == "queued"
            await services.access.revoke(record.id)

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
