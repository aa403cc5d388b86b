"""`DELETE /admin/tenants/{ref}`: a tenant and everything kept of it, and nothing of another."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import psycopg
import pytest

from propylon.access.tenant_deletion import tenant_tables
from propylon.testing import FakeUpstream
from tests.support.servers import AppServer, serve_app
from tests.support.waiting import finished

ADMIN = "admin-secret-for-tenant-deletion"
# Tables whose rows go with the tenant row (ON DELETE CASCADE), not deleted by tenant_id.
CASCADED = {"api_keys", "key_usage"}
# Mostly, the tables that hold a tenant's rows keep its id in `tenant_id`.
EVERY_TENANT_TABLE = """
SELECT table_name FROM information_schema.columns
WHERE table_schema = 'public' AND column_name = 'tenant_id'
"""


@pytest.fixture
async def server(database_url: str, upstream: FakeUpstream) -> AsyncIterator[AppServer]:
    models = [
        {
            "name": "gpt-test",
            "deployments": [{"provider": "openai", "base_url": f"{upstream.base_url}/v1"}],
        }
    ]
    jobs = {"in_process_worker": True, "poll_interval_s": 0.05}
    # Traces are written after their request's answer, so a count of a tenant's rows would
    # race with them: not kept here (`spans` is in the deletion's tables all the same, which
    # the catalog test checks).
    async with serve_app(
        database_url=database_url,
        models=models,
        admin_key=ADMIN,
        jobs=jobs,
        observe={"store_traces": False},
    ) as running:
        yield running


async def http(
    server: AppServer, method: str, path: str, key: str, body: Any = None
) -> tuple[int, Any]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(
            method, f"{server.url}{path}", json=body, headers={"Authorization": f"Bearer {key}"}
        ) as reply,
    ):
        return reply.status, await reply.json(content_type=None)


async def fill(server: AppServer, tenant: str) -> tuple[str, str]:
    """A key of ``tenant`` (made by the admin API) and one of each thing a tenant keeps."""
    status, made = await http(
        server,
        "POST",
        "/admin/keys",
        ADMIN,
        {"tenant": tenant, "features": ["chat", "rag", "admin"]},
    )
    assert status == 201, made
    key, tenant_id = made["key"], made["tenant_id"]
    hello = {"model": "gpt-test", "messages": [{"role": "user", "content": f"hi {tenant}"}]}
    status, answer = await http(
        server, "POST", "/v1/chat/completions", key, {**hello, "temperature": 0}
    )
    assert status == 200, answer
    status, _ = await http(
        server, "POST", "/v1/feedback", key, {"response_id": answer["id"], "score": "up"}
    )
    assert status == 201
    status, response = await http(
        server, "POST", "/v1/responses", key, {"model": "gpt-test", "input": "hi"}
    )
    assert status == 200, response
    status, _ = await http(
        server, "POST", "/v1/mcp-servers", key, {"name": "tools", "url": "https://mcp.example.com/"}
    )
    assert status == 201
    status, _ = await http(server, "POST", "/v1/collections", key, {"name": "manual"})
    assert status == 201
    status, upload = await http(
        server,
        "POST",
        "/v1/collections/manual/documents",
        key,
        {"text": f"{tenant} pumps prime fast."},
    )
    assert status == 202, upload

    async def job() -> dict[str, Any]:
        view: dict[str, Any] = (await http(server, "GET", f"/v1/jobs/{upload['job_id']}", key))[1]
        return view

    assert (await finished(job, "the upload to be ingested"))["state"] == "succeeded"
    ask = {"question": "How fast do pumps prime?", "conversation_id": "new"}
    status, answered = await http(server, "POST", "/v1/collections/manual/answer", key, ask)
    assert status == 200, answered
    status, run = await http(server, "POST", "/v1/runs", key, {"type": "chat", "request": hello})
    assert status == 202, run

    async def ran() -> dict[str, Any]:
        view: dict[str, Any] = (await http(server, "GET", f"/v1/runs/{run['id']}", key))[1]
        return view

    assert (await finished(ran, "the run to finish"))["state"] == "succeeded"
    return key, tenant_id


async def rows_of(database_url: str, tenant_id: str) -> dict[str, int]:
    """Rows per table whose `tenant_id` is ``tenant_id`` (as text or uuid)."""
    counts: dict[str, int] = {}
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        tables = [r[0] for r in await (await conn.execute(EVERY_TENANT_TABLE)).fetchall()]
        for table in tables:
            cur = await conn.execute(
                f"SELECT count(*) FROM {table} WHERE tenant_id::text = %s",
                (tenant_id,),
            )
            row = await cur.fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


async def test_every_table_holding_a_tenants_rows_is_emptied_by_the_deletion(
    database_url: str,
) -> None:
    """A table added later with a `tenant_id` column and forgotten here would keep the rows of
    deleted tenants."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        tables = {r[0] for r in await (await conn.execute(EVERY_TENANT_TABLE)).fetchall()}
    assert tables - CASCADED <= set(tenant_tables()), tables - set(tenant_tables())
    assert set(tenant_tables()) - {"tenants"} <= tables


async def test_deleting_a_tenant_removes_everything_of_it_and_nothing_of_another(
    server: AppServer, database_url: str
) -> None:
    doomed_key, doomed = await fill(server, "doomed")
    kept_key, kept = await fill(server, "kept")
    services = server.app.state.services
    await services.observe.request_log.flush()
    before = await rows_of(database_url, kept)
    assert all(before[table] >= 1 for table in ("collections", "runs", "request_log")), before

    status, refused = await http(server, "DELETE", "/admin/tenants/doomed", doomed_key)
    assert status == 403, refused  # a tenant admin may not delete tenants, its own included
    status, deleted = await http(server, "DELETE", "/admin/tenants/doomed", ADMIN)
    assert status == 200, deleted
    assert (deleted["id"], deleted["deleted"]) == (doomed, True)
    for table in (
        "collections",
        "responses",
        "conversations",
        "runs",
        "mcp_servers",
        "request_log",
        "feedback",
        "tenants",
    ):
        assert deleted["removed"][table] >= 1, (table, deleted["removed"])

    status, _ = await http(server, "POST", "/v1/chat/completions", doomed_key, {})
    assert status == 401, "its keys are refused at once"

    await services.observe.request_log.flush()
    left = {table: n for table, n in (await rows_of(database_url, doomed)).items() if n}
    assert left == {}, left
    after = await rows_of(database_url, kept)  # written behind may still arrive: only more
    assert all(after[table] >= count for table, count in before.items()), (before, after)
    status, still = await http(server, "GET", "/v1/collections/manual", kept_key)
    assert status == 200, still
    status, tenants = await http(server, "GET", "/admin/tenants", ADMIN)
    assert "doomed" not in {t["name"] for t in tenants["data"]}
    status, again = await http(server, "DELETE", f"/admin/tenants/{doomed}", ADMIN)
    assert status == 404 and again["error"]["param"] == "tenant", again
