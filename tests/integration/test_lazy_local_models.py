"""The local MiniLM loads on its first use, not at start-up: `/readyz` answers before it is
loaded, concurrent first requests share one load, and a load that fails is a clear 503 (and
`/readyz` says which model failed) instead of a 500 or a hang."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import pytest

from propylon.local.minilm import MiniLMEmbedder, ModelFileCorrupted
from tests.support.servers import AppServer, local_models, serve_app
from tests.support.waiting import eventually

EMBED = {"model": "local/all-MiniLM-L6-v2", "input": "Owls hunt at night."}


class CountingLoad:
    """``MiniLMEmbedder.load`` counted; it waits for ``gate`` and fails with ``error`` if set."""

    def __init__(self, error: Exception | None = None) -> None:
        self.real = MiniLMEmbedder.load
        self.calls = 0
        self.options: list[dict[str, Any]] = []
        self.gate = threading.Event()
        self.error = error

    def __call__(self, **options: Any) -> MiniLMEmbedder:
        self.calls += 1
        self.options.append(options)
        self.gate.wait(timeout=120)
        if self.error is not None:
            raise self.error
        return self.real(**options)


@asynccontextmanager
async def local_app(database_url: str) -> AsyncIterator[tuple[AppServer, aiohttp.ClientSession]]:
    """Propylon serving `config/local.yaml`'s models on the test's database, and a client."""
    async with (
        serve_app(database_url=database_url, models=local_models()) as server,
        aiohttp.ClientSession() as http,
    ):
        yield server, http


async def get(http: aiohttp.ClientSession, url: str) -> tuple[int, dict[str, Any]]:
    async with http.get(url) as resp:
        return resp.status, await resp.json()


async def post(server: AppServer, http: aiohttp.ClientSession, path: str, body: Any) -> Any:
    async with http.post(f"{server.v1}/{path}", json=body, headers=server.headers) as resp:
        return resp.status, await resp.json()


SHARED, GUARD = "all-MiniLM-L6-v2", "all-MiniLM-L6-v2+int8"  # the guard's reads user input


async def until_loading(server: AppServer) -> None:
    (model,) = [m for m in server.app.state.services.models if m.name == SHARED]

    async def loading() -> bool | None:
        return True if model.state == "loading" else None

    await eventually(loading, "the MiniLM load to start")


async def test_minilm_loads_once_for_concurrent_first_requests_after_ready(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    load = CountingLoad()
    monkeypatch.setattr(MiniLMEmbedder, "load", load)
    async with local_app(database_url) as (server, http):
        status, ready = await get(http, f"{server.url}/readyz")
        assert status == 200
        assert ready["models"] == {SHARED: "not loaded", GUARD: "not loaded"}
        assert load.calls == 0  # start-up loaded neither

        requests = [asyncio.create_task(post(server, http, "embeddings", EMBED)) for _ in range(8)]
        await until_loading(server)
        load.gate.set()
        results = await asyncio.gather(*requests)
        assert [status for status, _ in results] == [200] * 8
        vectors = {tuple(body["data"][0]["embedding"]) for _, body in results}
        assert len(vectors) == 1 and len(next(iter(vectors))) == 384
        assert load.calls == 1

        status, ready = await get(http, f"{server.url}/readyz")
        assert (status, ready["models"]) == (200, {SHARED: "loaded", GUARD: "not loaded"})


async def test_a_minilm_that_fails_to_load_is_a_clear_503_and_makes_readyz_fail(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    load = CountingLoad(ModelFileCorrupted("refusing to load model.onnx: its sha256 is 00"))
    load.gate.set()
    monkeypatch.setattr(MiniLMEmbedder, "load", load)
    async with local_app(database_url) as (server, http):
        assert (await get(http, f"{server.url}/readyz"))[0] == 200  # not needed yet

        def chat(question: str) -> dict[str, object]:
            return {
                "model": "local/extractive",
                "messages": [
                    {"role": "system", "content": "Owls hunt at night."},
                    {"role": "user", "content": question},
                ],
            }

        # An imperative the guard's static first stage is not sure of needs the guard's MiniLM
        # (int8 kernels, a model of its own): refused.
        needs_minilm = chat("Say hello to request 1.")
        for path, body, model in [
            ("embeddings", EMBED, SHARED),
            ("chat/completions", needs_minilm, GUARD),
        ] * 2:
            status, reply = await post(server, http, path, body)
            assert status == 503, (path, reply)
            message = reply["error"]["message"]
            assert f"{model} could not be loaded" in message
            assert "sha256 is 00" in message
        # A plain question the first stage clears alone is still answered: local/extractive
        # ranks its sentences by words when the embedder is unavailable.
        status, reply = await post(server, http, "chat/completions", chat("When do owls hunt?"))
        assert status == 200, reply
        assert "night" in str(reply["choices"])
        assert load.calls == 2  # once per model: remembered, not retried per request
        assert sorted(o["int8"] for o in load.options) == [False, True]  # the guard's: int8

        status, ready = await get(http, f"{server.url}/readyz")
        assert status == 503
        assert ready["status"] == "not ready" and ready["database"] == "ok"
        failed = "ModelFileCorrupted: refusing to load model.onnx: its sha256 is 00"
        assert ready["models"] == {SHARED: failed, GUARD: failed}


@pytest.mark.parametrize(
    ("overrides", "models"),
    [
        ({}, {SHARED, GUARD}),
        ({"guard": {"user_int8": False}}, {SHARED}),  # the guard reads with the shared one
        ({"local_int8": True}, {SHARED}),  # already int8: no second model
        ({"guard": {"classifier": False}}, {SHARED}),  # no classifier, no model for it
    ],
)
async def test_the_guard_has_a_model_of_its_own_only_when_it_reads_user_input_with_int8(
    database_url: str, overrides: dict[str, Any], models: set[str]
) -> None:
    async with (
        serve_app(database_url=database_url, models=local_models(), **overrides) as server,
        aiohttp.ClientSession() as http,
    ):
        status, ready = await get(http, f"{server.url}/readyz")
        assert status == 200
        assert set(ready["models"]) == models
