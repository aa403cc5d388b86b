"""Two real `propylon serve` processes sharing one database and one Redis.

Limits are exact across replicas (no over-admission), a revocation through one process is
refused by the other within a second, and no key reaches either process's log.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from propylon.testing import FakeUpstream
from tests.support.databases import terminate_key_listeners
from tests.support.processes import free_port, propylon_process, run_propylon, wait_http

pytestmark = pytest.mark.slow

ADMIN = "e2e-admin-key"
BODY = {"model": "gpt-e2e", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}


@pytest.fixture
async def replicas(
    tmp_path: Path, database_url: str, upstream: FakeUpstream
) -> AsyncIterator[tuple[list[str], dict[str, str]]]:
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
                ],
                # $1000 / $2000 per million tokens: a call of 1 + 16 tokens costs $0.033.
                "observe": {"prices": {"gpt-e2e": {"input": 1000.0, "output": 2000.0}}},
            }
        )
    )
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "PROPYLON_ACCESS__REDIS_PREFIX": f"e2e:{uuid.uuid4().hex}:",
        # Fail closed, patiently: on a busy test machine a slow answer must neither pass for
        # an outage nor admit anything; a real failure would show as a 503.
        "PROPYLON_ACCESS__REDIS_FAIL_OPEN": "false",
        "PROPYLON_ACCESS__REDIS_TIMEOUT_S": "10",
        "PROPYLON_ADMIN_KEY": ADMIN,
        "PROPYLON_LOG_LEVEL": "debug",
        "PROPYLON_CONFIG": str(config),
    }
    ports = [free_port(), free_port()]
    async with (
        propylon_process("serve", "--port", str(ports[0]), env=env, log=tmp_path / "a.log"),
        propylon_process("serve", "--port", str(ports[1]), env=env, log=tmp_path / "b.log"),
    ):
        urls = [f"http://127.0.0.1:{port}" for port in ports]
        for url in urls:
            await wait_http(f"{url}/readyz", timeout=60)
        yield urls, env


async def chat(http: aiohttp.ClientSession, url: str, key: str) -> int:
    async with http.post(
        f"{url}/v1/chat/completions", json=BODY, headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        await resp.read()
        return resp.status


async def test_two_replicas_admit_exactly_the_limit_between_them(
    replicas: tuple[list[str], dict[str, str]], upstream: FakeUpstream
) -> None:
    urls, env = replicas
    limit = 10  # one more every 6 s
    key = (
        await run_propylon("keys", "create", "--tenant", "hammer", "--rpm", str(limit), env=env)
    ).strip()
    async with aiohttp.ClientSession() as http:
        for url in urls:  # a refused warm-up would be miscounted: use a model-less GET
            async with http.get(f"{url}/v1/models", headers={"Authorization": f"Bearer {key}"}):
                pass
        started = time.monotonic()
        statuses = await asyncio.gather(*(chat(http, urls[i % 2], key) for i in range(80)))
        elapsed = time.monotonic() - started
    # Exactly the limit, plus one for each refill interval a slow machine let pass.
    admitted = statuses.count(200)
    assert limit <= admitted <= limit + int(elapsed // (60 / limit)), (admitted, elapsed)
    assert statuses.count(429) == 80 - admitted  # no 503: Redis answered every time
    assert upstream.calls["/v1/chat/completions"] == admitted


@pytest.mark.parametrize(
    ("flags", "error"),
    [
        (["--budget-tokens", "300", "--budget-period", "day"], "insufficient_quota"),
        (["--budget-usd", "0.3"], "insufficient_quota"),
        (["--tpm", "300"], "rate_limit_exceeded"),
    ],
    ids=["token-budget", "dollar-budget", "tpm"],
)
async def test_two_replicas_never_spend_more_than_a_budget_between_them(
    replicas: tuple[list[str], dict[str, str]],
    upstream: FakeUpstream,
    flags: list[str],
    error: str,
) -> None:
    urls, env = replicas
    name = f"k{uuid.uuid4().hex[:8]}"
    key = (
        await run_propylon("keys", "create", "--tenant", name, "--name", name, *flags, env=env)
    ).strip()
    body = {**BODY, "max_tokens": 20}  # reserves ~9 prompt tokens (our count) + 20
    headers = {"Authorization": f"Bearer {key}"}
    admin = {"Authorization": f"Bearer {ADMIN}"}

    async def call(url: str) -> tuple[int, dict[str, Any]]:
        async with http.post(f"{url}/v1/chat/completions", json=body, headers=headers) as resp:
            return resp.status, await resp.json()

    async with aiohttp.ClientSession() as http:
        started = time.monotonic()
        replies = await asyncio.gather(*(call(urls[i % 2]) for i in range(50)))
        elapsed = time.monotonic() - started
        for url in urls:  # each replica writes what it has counted before answering
            async with http.get(f"{url}/admin/keys/{name}/usage", headers=admin) as resp:
                usage = await resp.json()
    [today] = usage["days"]
    served = [r for s, r in replies if s == 200]
    refused = [r for s, r in replies if s != 200]
    assert {s for s, _ in replies} <= {200, 429}
    assert all(r["error"]["code"] == error for r in refused)
    assert today["requests"] == len(served) == upstream.calls["/v1/chat/completions"]
    tokens = today["prompt_tokens"] + today["completion_tokens"]
    if "--tpm" in flags:  # a rate, not an allowance: it refills 5 tokens a second
        assert tokens <= 300 + 5 * elapsed
    elif "--budget-usd" in flags:
        assert today["cost_usd"] <= 0.3
    else:
        assert tokens <= 300
    assert len(served) >= 5, "every reservation that fits is admitted"
    assert refused, "50 calls of 17 tokens cannot all fit"


async def test_a_key_revoked_through_one_replica_is_refused_by_the_other_within_seconds(
    replicas: tuple[list[str], dict[str, str]], tmp_path: Path
) -> None:
    (first, second), env = replicas
    key = (await run_propylon("keys", "create", "--tenant", "gone", "--name", "k", env=env)).strip()
    async with aiohttp.ClientSession() as http:
        assert [await chat(http, url, key) for url in (first, second)] == [200, 200]
        await revoke_then_wait_refused(http, first, second, "k", key, within_s=10.0)
        assert await chat(http, first, key) == 403

    # Neither process ever wrote a key, whatever they logged at debug level.
    logs = (tmp_path / "a.log").read_text() + (tmp_path / "b.log").read_text()
    assert "key change listener" not in logs  # the listener never dropped
    assert key[12:] not in logs
    assert ADMIN not in logs


async def test_a_revocation_reaches_a_replica_whose_listen_connection_was_killed(
    replicas: tuple[list[str], dict[str, str]], database_url: str
) -> None:
    (first, second), env = replicas
    key = (await run_propylon("keys", "create", "--tenant", "cut", "--name", "c", env=env)).strip()
    async with aiohttp.ClientSession() as http:
        assert [await chat(http, url, key) for url in (first, second)] == [200, 200]
        killed = await terminate_key_listeners(database_url)
        assert killed == 2, "each replica's LISTEN connection"
        # Reconnecting reloads every key; the periodic reload (30 s) is the last resort.
        await revoke_then_wait_refused(http, first, second, "c", key, within_s=15.0)


async def revoke_then_wait_refused(
    http: aiohttp.ClientSession, first: str, second: str, name: str, key: str, within_s: float
) -> None:
    """Revoke ``name`` through ``first``; ``second`` must refuse ``key`` within ``within_s``."""
    async with http.post(
        f"{first}/admin/keys/{name}/revoke", headers={"Authorization": f"Bearer {ADMIN}"}
    ) as resp:
        assert resp.status == 200
    revoked_at = time.monotonic()
    while (status := await chat(http, second, key)) == 200:
        assert time.monotonic() - revoked_at < within_s, f"still served {within_s} s after"
        await asyncio.sleep(0.01)
    assert status == 403
