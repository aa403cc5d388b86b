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


def native_gpt(base_url: str, name: str = "native-gpt") -> dict[str, Any]:
    """A model whose deployment (the fake upstream at ``base_url``) speaks Responses, so
    `/v1/responses` is passed through to it as it came."""
    deployment = {
        "provider": "openai",
        "base_url": f"{base_url}/v1",
        "model": "fake-gpt",
        "native_apis": ["responses"],
    }
    return {"name": name, "deployments": [deployment]}


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


_SHUTDOWN_S = 30.0  # a test's requests still running when it ends get this long to finish


@asynccontextmanager
async def serve_uvicorn(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app on 127.0.0.1 with a free port; yield its base URL.

    The server's start-up and shutdown are awaited directly, not through ``Server.serve``,
    whose main loop looks at its exit flag every 0.1 s: that was up to 0.1 s of every test
    that starts a server (about 1,000 of them), spent waiting."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, access_log=False)
    config.load()
    server = uvicorn.Server(config)
    server.lifespan = config.lifespan_class(config)
    try:
        await server.startup()
    except SystemExit as exit_:
        # uvicorn exits the process (``SystemExit(3)``) when the app fails to start. Inside a
        # test that must be an ordinary failure: a SystemExit escaping a fixture leaves
        # pytest's fixture cache behind, and later tests then reuse the failed test's database.
        raise RuntimeError(
            f"uvicorn exited with code {exit_.code}: the app failed to start"
        ) from None
    try:
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        await _shutdown(server)


async def _shutdown(server: uvicorn.Server) -> None:
    """``Server.shutdown`` without its fixed 0.1 s pauses: stop listening, ask each
    connection to close (an idle one closes at once, a busy one after its response), wait
    for the requests still running (at most ``_SHUTDOWN_S``; the rest are cancelled), then
    the app's shutdown."""
    for listening in server.servers:
        listening.close()
    for connection in list(server.server_state.connections):
        connection.shutdown()
    running = set(server.server_state.tasks)
    if running:
        _, left = await asyncio.wait(running, timeout=_SHUTDOWN_S)
        for task in left:
            task.cancel()
    for listening in server.servers:
        await listening.wait_closed()
    await server.lifespan.shutdown()


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
