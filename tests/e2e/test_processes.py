"""Whole processes over loopback: `propylon serve` relaying from `propylon fake-upstream`, the
official openai SDK as the client, and the embedded database across a restart."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import openai
import psycopg
import pytest
import yaml

from tests.support.processes import free_port, propylon_process, run_propylon, wait_http
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


@pytest.fixture
async def fake_upstream_url(tmp_path: Path) -> AsyncIterator[str]:
    port = free_port()
    async with propylon_process(
        "fake-upstream",
        "--port",
        str(port),
        "--tokens-per-second",
        "200",
        log=tmp_path / "fake.log",
    ):
        url = f"http://127.0.0.1:{port}"
        await wait_http(f"{url}/v1/models")
        yield url


def write_config(tmp_path: Path, upstream: str) -> Path:
    config = tmp_path / "propylon.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "name": "gpt-e2e",
                        "deployments": [{"provider": "openai", "base_url": f"{upstream}/v1"}],
                    }
                ]
            }
        )
    )
    return config


async def test_sdk_talks_to_serve_relaying_from_fake_upstream_with_embedded_db(
    tmp_path: Path, data_dir: Path, fake_upstream_url: str
) -> None:
    config = write_config(tmp_path, fake_upstream_url)
    port = free_port()
    args = ("serve", "--config", str(config), "--data-dir", str(data_dir), "--port", str(port))
    base = f"http://127.0.0.1:{port}"

    async with propylon_process(*args, log=tmp_path / "serve-1.log"):
        await wait_http(f"{base}/readyz")
        # The CLI attaches to the embedded database `serve` is running and prints a new key.
        created = await run_propylon(
            "keys", "create", "--tenant", "e2e", "--data-dir", str(data_dir)
        )
        key = created.strip()
        async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0) as sdk:
            reply = await sdk.chat.completions.create(
                model="gpt-e2e", messages=[{"role": "user", "content": "hello there"}]
            )
            assert reply.choices[0].message.content
            stream = await sdk.chat.completions.create(
                model="gpt-e2e", messages=[{"role": "user", "content": "hello"}], stream=True
            )
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text
        # Leave a mark in the embedded database to find after a restart.
        uri = f"postgresql://postgres:@/postgres?host={data_dir / 'pg'}"
        async with await psycopg.AsyncConnection.connect(uri, autocommit=True) as conn:
            await conn.execute("CREATE TABLE e2e_mark (v text)")
            await conn.execute("INSERT INTO e2e_mark VALUES ('survives')")

    async with propylon_process(*args, log=tmp_path / "serve-2.log"):
        await wait_http(f"{base}/readyz")
        async with await psycopg.AsyncConnection.connect(uri) as conn:
            cur = await conn.execute("SELECT v FROM e2e_mark")
            assert await cur.fetchall() == [("survives",)]


async def test_worker_connects_and_stops_cleanly_on_sigterm(
    tmp_path: Path, database_url: str
) -> None:
    log = tmp_path / "worker.log"
    async with propylon_process("worker", env={"DATABASE_URL": database_url}, log=log) as proc:

        async def ready() -> bool | None:
            return True if b"worker ready" in log.read_bytes() else None

        await eventually(ready, "the worker to log 'worker ready'")
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert b"worker stopping" in log.read_bytes()
