"""No secret in any log line or request-log row after a full end-to-end run of a real
`propylon serve` at debug level: chat, stream, WebSockets (header, ticket, and a refused key in
the URL), an upload ingested by the in-process worker, a run, the admin API and /v1/logs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import psycopg
import pytest
import yaml

from propylon.testing import Behaviour, FakeUpstream
from tests.support.processes import free_port, propylon_process, wait_http
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow

ADMIN = "e2e-admin-secret-0123456789"
PROVIDER_KEY = "sk-upstream-secret-abcdefghijklmnop"


def write_config(tmp_path: Path, upstream: FakeUpstream) -> Path:
    deployment = {
        "provider": "openai",
        "base_url": f"{upstream.base_url}/v1",
        "api_key_env": "E2E_PROVIDER_KEY",
    }
    config = tmp_path / "propylon.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {"name": "gpt-e2e", "deployments": [deployment]},
                    {"name": "embed-e2e", "kind": "embeddings", "deployments": [deployment]},
                ],
                "rag": {"embedding_model": "embed-e2e"},
                "guard": {"enabled": False},
            }
        )
    )
    return config


async def call(
    http: aiohttp.ClientSession,
    method: str,
    url: str,
    key: str,
    *,
    expect: int | tuple[int, ...] = 200,
    **kwargs: Any,
) -> Any:
    async with http.request(
        method, url, headers={"Authorization": f"Bearer {key}"}, **kwargs
    ) as resp:
        statuses = (expect,) if isinstance(expect, int) else expect
        assert resp.status in statuses, await resp.text()
        return await resp.json(content_type=None)


async def test_a_full_run_leaves_no_key_or_upstream_secret_in_logs_or_request_log(
    tmp_path: Path, database_url: str, upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(Behaviour(require_api_key=PROVIDER_KEY))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    ws_url = url.replace("http://", "ws://")
    env = {
        "DATABASE_URL": database_url,
        "PROPYLON_ADMIN_KEY": ADMIN,
        "PROPYLON_LOG_LEVEL": "debug",
        "PROPYLON_CONFIG": str(write_config(tmp_path, upstream)),
        "PROPYLON_JOBS__IN_PROCESS_WORKER": "true",
        "E2E_PROVIDER_KEY": PROVIDER_KEY,
    }
    log = tmp_path / "serve.log"
    keys: list[str] = []
    async with (
        propylon_process("serve", "--port", str(port), env=env, log=log),
        aiohttp.ClientSession() as http,
    ):
        await wait_http(f"{url}/readyz", timeout=90)
        made = await call(
            http,
            "POST",
            f"{url}/admin/keys",
            ADMIN,
            expect=201,
            json={"tenant": "acme", "features": ["chat", "rag", "embeddings", "logs:read"]},
        )
        key = made["key"]
        keys.append(key)
        body = {"model": "gpt-e2e", "messages": [{"role": "user", "content": "hello"}]}
        await call(http, "POST", f"{url}/v1/chat/completions", key, json=body)
        async with http.post(
            f"{url}/v1/chat/completions",
            json={**body, "stream": True},
            headers={"Authorization": f"Bearer {key}"},
        ) as resp:
            assert resp.status == 200
            assert b"[DONE]" in await resp.read()
        await call(
            http,
            "POST",
            f"{url}/v1/embeddings",
            key,
            json={"model": "embed-e2e", "input": "hi"},
        )

        collection = await call(
            http, "POST", f"{url}/v1/collections", key, expect=201, json={"name": "docs"}
        )
        form = aiohttp.FormData()
        form.add_field("file", b"# Notes\n\nThe sky is blue.\n", filename="notes.md")
        upload = await call(
            http,
            "POST",
            f"{url}/v1/collections/{collection['id']}/documents",
            key,
            expect=202,
            data=form,
        )

        # The job's feed through a ticket, as browsers do.
        ticket = await call(http, "POST", f"{url}/v1/ws-tickets", key, expect=201)
        async with http.ws_connect(
            f"{ws_url}/v1/jobs/{upload['job_id']}/events",
            protocols=("propylon", ticket["subprotocol"]),
        ) as ws:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
            assert ws.close_code == 1000
        # A client that still puts its key in the URL is refused (and the URL is not logged).
        async with http.ws_connect(
            f"{ws_url}/v1/jobs/{upload['job_id']}/events?api_key={key}"
        ) as ws:
            refusal = await ws.receive_json(timeout=30)
            assert refusal["error"]["code"] == "api_key_in_url"

        run = await call(
            http,
            "POST",
            f"{url}/v1/runs",
            key,
            expect=202,
            json={"type": "chat", "request": body},
        )
        async with http.ws_connect(
            f"{ws_url}/v1/runs/{run['id']}/events",
            headers={"Authorization": f"Bearer {key}"},
        ) as ws:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break

        await call(http, "GET", f"{url}/admin/keys", ADMIN)
        await call(http, "GET", f"{url}/admin/tenants", ADMIN)
        await call(http, "GET", f"{url}/v1/collections/{collection['id']}/documents", key)

        async def logged() -> Any:
            rows = await call(http, "GET", f"{url}/v1/logs?limit=100", key)
            return rows if len(rows["data"]) >= 5 else None

        await eventually(logged, "the request log rows of the run")

    secrets = [*keys, ADMIN, PROVIDER_KEY]
    lines = log.read_text().splitlines()
    assert any('"WebSocket /v1/jobs/' in line for line in lines), "uvicorn logged the sockets"
    for number, line in enumerate(lines, 1):
        for secret in secrets:
            assert secret not in line, f"log line {number} holds a secret: {line[:200]}"
        assert "api_key=" not in line, f"log line {number} holds a query string: {line[:200]}"
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute("SELECT row_to_json(r)::text FROM request_log r")
        rows = [row[0] for row in await cur.fetchall()]
    assert len(rows) >= 5
    for row in rows:
        for secret in secrets:
            assert secret not in row
