"""`propylon serve --workers N`: several processes on one port, limits exact through Redis."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp
import psutil
import pytest
import yaml

from propylon.testing import FakeUpstream
from tests.support.processes import free_port, propylon_process, run_propylon, wait_http

pytestmark = pytest.mark.slow

BODY = {"model": "gpt-e2e", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


async def test_two_server_processes_share_the_port_and_admit_exactly_the_limit(
    tmp_path: Path, database_url: str, upstream: FakeUpstream
) -> None:
    config = tmp_path / "propylon.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "name": "gpt-e2e",
                        "deployments": [
                            {"provider": "openai", "base_url": f"{upstream.base_url}/v1"}
                        ],
                    }
                ]
            }
        )
    )
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "PROPYLON_ACCESS__REDIS_PREFIX": f"workers:{uuid.uuid4().hex}:",
        "PROPYLON_ACCESS__REDIS_FAIL_OPEN": "false",
        "PROPYLON_ACCESS__REDIS_TIMEOUT_S": "10",
        "PROPYLON_GUARD__CLASSIFIER": "false",
    }
    port = free_port()
    args = ("serve", "--config", str(config), "--port", str(port), "--workers", "2")
    async with propylon_process(*args, env=env, log=tmp_path / "serve.log") as parent:
        url = f"http://127.0.0.1:{port}"
        await wait_http(f"{url}/readyz", timeout=90)
        children = psutil.Process(parent.pid).children(recursive=True)
        servers = [c for c in children if "python" in c.name().lower()]
        assert len(servers) >= 2, [c.cmdline() for c in children]

        limit = 10
        key = (
            await run_propylon(
                "keys", "create", "--tenant", "workers", "--rpm", str(limit), env=env
            )
        ).strip()
        headers = {"Authorization": f"Bearer {key}"}
        async with aiohttp.ClientSession() as http:

            async def chat() -> int:
                async with http.post(
                    f"{url}/v1/chat/completions", json=BODY, headers=headers
                ) as resp:
                    await resp.read()
                    return resp.status

            statuses = await asyncio.gather(*(chat() for _ in range(40)))
    assert statuses.count(200) == limit
    assert statuses.count(429) == 40 - limit
    assert upstream.calls["/v1/chat/completions"] == limit
