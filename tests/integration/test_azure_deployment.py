"""Azure OpenAI's form: deployment URL, `api-version` query, `api-key` header."""

from __future__ import annotations

import aiohttp
import pytest

from propylon.testing import FakeUpstream
from tests.support.servers import serve_app


async def test_azure_deployment_sends_api_version_and_api_key_header(
    database_url: str, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_AZURE_KEY", "azure-secret")
    models = [
        {
            "name": "gpt-azure",
            "deployments": [
                {
                    "provider": "azure",
                    "base_url": f"{upstream.base_url}/v1",
                    "model": "my-deployment",
                    "api_version": "2024-10-21",
                    "api_key_env": "TEST_AZURE_KEY",
                }
            ],
        }
    ]
    async with serve_app(database_url=database_url, models=models) as server:
        headers = getattr(server, "headers", {})
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{server.v1}/chat/completions",
                json={"model": "gpt-azure", "messages": [{"role": "user", "content": "hi"}]},
                headers=headers,
            ) as resp,
        ):
            assert resp.status == 200, await resp.text()
    sent = upstream.last_request("/v1/chat/completions")
    assert sent is not None
    assert sent.query == {"api-version": "2024-10-21"}
    assert sent.headers["api-key"] == "azure-secret"
    assert "authorization" not in sent.headers
