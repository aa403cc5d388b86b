"""Hostile input gets a clear 4xx, never a 5xx; secrets never leave in an error message."""

from __future__ import annotations

import aiohttp
import pytest

from propylon.testing import Behaviour, FakeUpstream, Fault
from tests.support.servers import AppServer, serve_app

PROVIDER_KEY = "sk-live-0123456789abcdefghijklmn"


async def post(
    server: AppServer, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.v1}/chat/completions",
            data=body,
            headers={**server.headers, "Content-Type": "application/json", **(headers or {})},
        ) as resp,
    ):
        return resp.status, await resp.text()


async def test_absurdly_deep_json_is_a_400_not_a_crash(gateway: AppServer) -> None:
    status, body = await post(gateway, b"[" * 100_000 + b"]" * 100_000)
    assert status == 400
    assert "invalid_json" in body


async def test_an_oversized_header_is_refused_without_a_server_error(gateway: AppServer) -> None:
    status, _ = await post(gateway, b"{}", {"X-Padding": "a" * 200_000})
    assert 400 <= status < 500


async def test_a_provider_key_echoed_by_the_upstream_never_reaches_the_client(
    database_url: str, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PROVIDER_KEY", PROVIDER_KEY)
    upstream.set_behaviour(
        Behaviour(
            faults=(Fault(kind="status", status=401, message=f"Incorrect API key: {PROVIDER_KEY}"),)
        )
    )
    models = [
        {
            "name": "gpt-secret",
            "deployments": [
                {
                    "provider": "openai",
                    "base_url": f"{upstream.base_url}/v1",
                    "api_key_env": "TEST_PROVIDER_KEY",
                }
            ],
        }
    ]
    async with serve_app(database_url=database_url, models=models) as server:
        for stream in (False, True):
            body = (
                b'{"model": "gpt-secret", "stream": '
                + (b"true" if stream else b"false")
                + b', "messages": [{"role": "user", "content": "hi"}]}'
            )
            status, text = await post(server, body)
            assert status == 401
            assert PROVIDER_KEY not in text
            assert "[REDACTED]" in text
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{server.v1}/logs", headers=server.headers) as resp,
        ):
            logs = await resp.text()
    assert PROVIDER_KEY not in logs
