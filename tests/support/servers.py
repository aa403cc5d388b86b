"""Run Propylon in the test's event loop, served by uvicorn on a free loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import openai
import uvicorn

from propylon.app import create_app
from propylon.settings import Settings, load_settings

LOCAL_CONFIG = Path(__file__).parents[2] / "config" / "local.yaml"


def local_models() -> list[Any]:
    """The models `config/local.yaml` serves: the built-in MiniLM, extractive answers…"""
    return list(load_settings(LOCAL_CONFIG).models)


def gpt_and_claude(base_url: str) -> list[dict[str, Any]]:
    """Models `gpt-test` (OpenAI-compatible) and `claude-test` (Anthropic, key in the env var
    `TEST_ANTHROPIC_KEY`), both served by the fake upstream at ``base_url``."""
    claude = {
        "provider": "anthropic",
        "base_url": base_url,
        "model": "fake-claude",
        "api_key_env": "TEST_ANTHROPIC_KEY",
    }
    return [
        {"name": "gpt-test", "deployments": [{"provider": "openai", "base_url": f"{base_url}/v1"}]},
        {"name": "claude-test", "deployments": [claude]},
    ]


@dataclass(frozen=True, slots=True)
class AppServer:
    url: str
    settings: Settings
    api_key: str = ""  # a key of tenant `test` (chat, embeddings, rag), made at start
    app: Any = None

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    @property
    def headers(self) -> dict[str, str]:
        """The Authorization header every `/v1` call needs."""
        return {"Authorization": f"Bearer {self.api_key}"}


def openai_sdk(server: AppServer, key: str | None = None) -> openai.AsyncOpenAI:
    """The OpenAI SDK pointed at ``server`` (its test key unless ``key``), never retrying."""
    return openai.AsyncOpenAI(base_url=server.v1, api_key=key or server.api_key, max_retries=0)


def anthropic_sdk(server: AppServer, key: str | None = None) -> anthropic.AsyncAnthropic:
    """The Anthropic SDK pointed at ``server`` (its test key unless ``key``), never retrying."""
    return anthropic.AsyncAnthropic(
        base_url=server.url, api_key=key or server.api_key, max_retries=0
    )


@asynccontextmanager
async def serve_uvicorn(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app on 127.0.0.1 with a free port; yield its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(_serve(server))
    try:
        while not server.started:
            if task.done():
                await task  # re-raise the startup failure
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def _serve(server: uvicorn.Server) -> None:
    """uvicorn exits the process (``SystemExit(3)``) when the app fails to start. Inside a test
    that must be an ordinary failure: a SystemExit escaping a fixture's teardown leaves pytest's
    fixture cache behind, and later tests then reuse the failed test's database."""
    try:
        await server.serve()
    except SystemExit as exit_:
        raise RuntimeError(
            f"uvicorn exited with code {exit_.code}: the app failed to start"
        ) from None


def deterministic(overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` with no random sampling of semantic hits for verification (the product
    verifies 2 % by default; a test that is about it sets ``cache.semantic_verify_share``)."""
    cache = overrides.get("cache") or {}
    return {**overrides, "cache": {"semantic_verify_share": 0.0, **cache}}


@asynccontextmanager
async def serve_app(**overrides: Any) -> AsyncIterator[AppServer]:
    settings = load_settings(None, **deterministic(overrides))
    app = create_app(settings)
    async with serve_uvicorn(app) as url:
        key, _ = await app.state.services.access.create_key("test")
        yield AppServer(url, settings, key, app)
