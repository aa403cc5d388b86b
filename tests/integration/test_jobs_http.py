"""Jobs over real HTTP and WebSockets: polling, cancelling, live events, tenant isolation."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from propylon.app import create_app
from propylon.jobs.handler import Handlers
from propylon.jobs.queue import JobQueue
from propylon.services import Services
from propylon.settings import load_settings
from tests.support.job_handlers import RECORD_TABLES, Gates, handlers_for_tests
from tests.support.job_rig import FAST
from tests.support.servers import serve_uvicorn


@dataclass
class JobsServer:
    url: str
    services: Services
    gates: Gates
    key: str  # tenant "alpha"
    other_key: str  # tenant "beta"
    tenant_id: str

    @property
    def queue(self) -> JobQueue:
        return self.services.jobs

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def ws(self, path: str) -> str:
        return self.url.replace("http://", "ws://") + path

    async def enqueue(self, kind: str, payload: dict[str, Any] | None = None, **kw: Any) -> str:
        return await self.queue.enqueue(
            tenant_id=self.tenant_id, kind=kind, payload=payload or {}, **kw
        )


@pytest.fixture
async def server(database_url: str) -> AsyncIterator[JobsServer]:
    gates = Gates()

    def handlers(services: Services) -> Handlers:
        return handlers_for_tests(services.database, gates)

    jobs = {**FAST.model_dump(), "in_process_worker": True}
    settings = load_settings(None, database_url=database_url, jobs=jobs)
    app = create_app(settings, handlers=handlers)
    async with serve_uvicorn(app) as url:
        services: Services = app.state.services
        async with services.database.connection() as conn:
            await conn.execute(RECORD_TABLES)
        key, record = await services.access.create_key("alpha")
        other, _ = await services.access.create_key("beta")
        yield JobsServer(url, services, gates, key, other, record.principal().tenant_id)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def get_job(http: aiohttp.ClientSession, server: JobsServer, job_id: str) -> Any:
    async with http.get(f"{server.url}/v1/jobs/{job_id}", headers=server.headers()) as resp:
        assert resp.status == 200
        return await resp.json()


async def test_polling_shows_the_job_and_its_result(
    server: JobsServer, http: aiohttp.ClientSession
) -> None:
    job_id = await server.enqueue("echo", {"hello": "world"})
    view = await server.queue.wait(server.tenant_id, job_id, 20)
    assert view.state == "succeeded"
    body = await get_job(http, server, job_id)
    assert body["id"] == job_id
    assert body["object"] == "job"
    assert body["state"] == "succeeded"
    assert body["result"] == {"echo": {"hello": "world"}, "attempt": 1}
    assert set(body["stages"]) >= {"queued", "running", "succeeded"}
    assert "payload" not in body and "tenant_id" not in body


async def test_another_tenant_gets_404_for_the_job(
    server: JobsServer, http: aiohttp.ClientSession
) -> None:
    job_id = await server.enqueue("echo")
    other = server.headers(server.other_key)
    for method, path in (("GET", f"/v1/jobs/{job_id}"), ("POST", f"/v1/jobs/{job_id}/cancel")):
        async with http.request(method, server.url + path, headers=other) as resp:
            assert resp.status == 404
            error = (await resp.json())["error"]
            assert error["code"] == "job_not_found"
            assert error["type"] == "invalid_request_error"
    async with http.get(f"{server.url}/v1/jobs/nonsense", headers=server.headers()) as resp:
        assert resp.status == 404


async def test_jobs_need_an_api_key(server: JobsServer, http: aiohttp.ClientSession) -> None:
    job_id = await server.enqueue("echo")
    async with http.get(f"{server.url}/v1/jobs/{job_id}") as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "missing_api_key"


async def test_cancel_stops_a_running_job_promptly(
    server: JobsServer, http: aiohttp.ClientSession
) -> None:
    job_id = await server.enqueue("block")
    await asyncio.wait_for(server.gates.started.wait(), 10)
    # The cancel call waits (up to jobs.cancel_wait_s) for the worker to stop the job: its
    # answer already says "cancelled", not "running" with cancel_requested.
    async with http.post(f"{server.url}/v1/jobs/{job_id}/cancel", headers=server.headers()) as r:
        assert r.status == 200
        body = await r.json()
    assert body["state"] == "cancelled"
    assert server.gates.cleaned_up.is_set()
    assert (await get_job(http, server, job_id))["state"] == "cancelled"


async def test_websocket_sends_snapshot_then_stage_and_progress_events_in_order(
    server: JobsServer, http: aiohttp.ClientSession
) -> None:
    stages = ["parsing", "chunking", "embedding"]
    job_id = await server.enqueue("steps", {"stages": stages, "hold": True})
    polled: list[tuple[str, str | None]] = []
    received: list[dict[str, Any]] = []
    async with http.ws_connect(
        server.ws(f"/v1/jobs/{job_id}/events"), headers=server.headers()
    ) as ws:
        first = await ws.receive_json(timeout=10)
        assert first["type"] == "snapshot"
        assert first["job"]["id"] == job_id
        received.append(first)
        for stage in stages:
            server.gates.gate(stage).set()
            # Read this stage's events (a stage event and progress events) off the socket,
            # and poll: the polled state matches what was pushed.
            while True:
                event = await ws.receive_json(timeout=10)
                received.append(event)
                if event.get("stage") == stage and event["progress"]["fraction"] == 1.0:
                    break
            body = await get_job(http, server, job_id)
            polled.append((body["state"], body["stage"]))
            assert body["seq"] >= event["seq"]
            assert body["progress"]["counters"] == {"items": 2}
        server.gates.gate("finish").set()
        while True:
            event = await ws.receive_json(timeout=10)
            received.append(event)
            if event["state"] == "succeeded":
                break
        closing = await ws.receive(timeout=10)
        assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)

    events = received[1:]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seqs[0] > first["job"]["seq"]
    stage_events = [e["stage"] for e in events if e["type"] == "stage"]
    assert stage_events == stages
    for stage in stages:
        fractions = [e["progress"]["fraction"] for e in events if e["stage"] == stage]
        assert fractions == sorted(fractions)
    assert polled == [("running", s) for s in stages]
    final = await get_job(http, server, job_id)
    assert final["state"] == "succeeded"
    assert set(stages) <= set(final["stages"])
    assert final["seq"] == events[-1]["seq"]


async def refusal(http: aiohttp.ClientSession, url: str, **connect: Any) -> tuple[str, int]:
    """The error code of the one message a refused socket gets, and its close code."""
    async with http.ws_connect(url, **connect) as ws:
        message = await ws.receive_json(timeout=10)
        assert message["type"] == "error"
        closing = await ws.receive(timeout=10)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        return message["error"]["code"], closing.data


async def ws_ticket(http: aiohttp.ClientSession, server: JobsServer) -> dict[str, Any]:
    async with http.post(f"{server.url}/v1/ws-tickets", headers=server.headers()) as resp:
        assert resp.status == 201
        body: dict[str, Any] = await resp.json()
        return body


async def test_websocket_opens_with_a_ticket_offered_as_subprotocol_once(
    server: JobsServer, http: aiohttp.ClientSession
) -> None:
    job_id = await server.enqueue("echo")
    await server.queue.wait(server.tenant_id, job_id, 20)
    ticket = await ws_ticket(http, server)
    assert ticket["expires_in"] == 30
    assert ticket["subprotocol"] == f"propylon-ticket.{ticket['ticket']}"
    protocols = ("propylon", ticket["subprotocol"])
    url = server.ws(f"/v1/jobs/{job_id}/events")
    async with http.ws_connect(url, protocols=protocols) as ws:
        assert ws.protocol == "propylon"
        first = await ws.receive_json(timeout=10)
        assert first["type"] == "snapshot"
        assert first["job"]["state"] == "succeeded"
        closing = await ws.receive(timeout=10)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert closing.data == 1000
    # Single use: the same ticket opens nothing the second time.
    assert await refusal(http, url, protocols=protocols) == ("invalid_ticket", 4401)


@pytest.mark.parametrize(
    ("spoiled", "refused"),
    [("expired", ("invalid_ticket", 4401)), ("revoked", ("api_key_revoked", 4403))],
)
async def test_a_ticket_is_refused_once_expired_or_its_key_revoked(
    server: JobsServer, http: aiohttp.ClientSession, spoiled: str, refused: tuple[str, int]
) -> None:
    key, record = await server.services.access.create_key("alpha")
    job_id = await server.enqueue("echo")
    async with http.post(f"{server.url}/v1/ws-tickets", headers=server.headers(key)) as resp:
        ticket = await resp.json()
    if spoiled == "revoked":
        await server.services.access.revoke(record.id)
    else:
        async with server.services.database.connection() as conn:  # as if 30 s had passed
            await conn.execute("UPDATE ws_tickets SET expires_at = now() - interval '1 second'")
    url = server.ws(f"/v1/jobs/{job_id}/events")
    assert await refusal(http, url, protocols=("propylon", ticket["subprotocol"])) == refused


async def test_websocket_refuses_a_key_in_the_url(
    server: JobsServer, http: aiohttp.ClientSession
) -> None:
    job_id = await server.enqueue("echo")
    url = server.ws(f"/v1/jobs/{job_id}/events?api_key={server.key}")
    assert await refusal(http, url) == ("api_key_in_url", 4401)


@pytest.mark.parametrize(
    ("key", "code", "error_code"),
    [(None, 4401, "missing_api_key"), ("other", 4404, "job_not_found")],
)
async def test_websocket_refusals_say_why_and_close_with_the_status(
    server: JobsServer, http: aiohttp.ClientSession, key: str | None, code: int, error_code: str
) -> None:
    job_id = await server.enqueue("echo")
    headers = server.headers(server.other_key) if key == "other" else {}
    url = server.ws(f"/v1/jobs/{job_id}/events")
    assert await refusal(http, url, headers=headers) == (error_code, code)


async def collection(server: JobsServer, name: str) -> str:
    """A real collection of tenant alpha: the feed refuses an unknown one."""
    row = await server.services.collections.create(server.tenant_id, name=name)
    return str(row["id"])


async def test_collection_feed_carries_only_that_collections_jobs(
    server: JobsServer, http: aiohttp.ClientSession
) -> None:
    c1, c2 = await collection(server, "c1"), await collection(server, "c2")
    earlier = await server.enqueue("echo", collection_id=c1)
    await server.queue.wait(server.tenant_id, earlier, 20)
    async with http.ws_connect(
        server.ws("/v1/collections/c1/events"),
        headers=server.headers(),  # by name, or id
    ) as ws:
        snapshot = await ws.receive_json(timeout=10)
        assert snapshot["type"] == "snapshot"
        assert snapshot["job"]["id"] == earlier
        elsewhere = await server.enqueue("echo", collection_id=c2)
        here = await server.enqueue("echo", collection_id=c1)
        states: list[str] = []
        while "succeeded" not in states:
            event = await ws.receive_json(timeout=10)
            assert event["job_id"] == here, event
            assert event["collection_id"] == c1
            states.append(event["state"])
        assert states[0] == "queued"
        assert "running" in states
    assert (await server.queue.wait(server.tenant_id, elsewhere, 20)).state == "succeeded"


@pytest.mark.parametrize("whose", ["another tenant's", "nonexistent"])
async def test_collection_feed_of_another_tenant_or_none_closes_with_4404(
    server: JobsServer, http: aiohttp.ClientSession, whose: str
) -> None:
    """As the job and run feeds do; before, the socket stayed open and silent."""
    c1 = await collection(server, "c1")
    ref = c1 if whose == "another tenant's" else "00000000-0000-0000-0000-000000000000"
    async with http.ws_connect(
        server.ws(f"/v1/collections/{ref}/events"), headers=server.headers(server.other_key)
    ) as ws:
        message = await ws.receive_json(timeout=10)
        assert message["type"] == "error"
        assert message["error"]["code"] == "not_found"
        closing = await ws.receive(timeout=10)
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert closing.data == 4404


async def test_metrics_show_queue_depth_and_finished_jobs(database_url: str) -> None:
    """The queue's depth is read at scrape time; each job a worker ends is counted."""
    from propylon.settings import load_settings
    from tests.support.servers import serve_uvicorn

    async def echo(ctx: Any) -> dict[str, Any]:
        return {"echo": ctx.payload}

    settings = load_settings(None, database_url=database_url, jobs={"in_process_worker": True})
    app = create_app(settings, handlers=lambda services: {"echo": echo})
    tenant = "11111111-1111-1111-1111-111111111111"
    async with serve_uvicorn(app) as url:
        queue = app.state.services.jobs
        job = await queue.enqueue(tenant_id=tenant, kind="echo", payload={})
        await queue.wait(tenant, job, timeout=10)
        await queue.enqueue(tenant_id=tenant, kind="not-handled", payload={})
        async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
            text = await resp.text()
    assert 'propylon_job_duration_seconds_count{kind="echo",outcome="succeeded"} 1.0' in text
    assert 'queue="not-handled"} 1.0' in text
