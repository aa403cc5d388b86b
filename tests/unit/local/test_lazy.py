"""Models loaded on first use: one load however many callers arrive at once, a caller that
gives up does not stop it, and a failed load is a clear 503 every time, never a hang."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from tests.support.waiting import eventually

from propylon.gateway.protocol import Embeddings
from propylon.local.lazy import LazyEmbedder, LazyModel, ModelUnavailable
from propylon.local.minilm import ModelFileCorrupted


class Model:
    def __init__(self) -> None:
        self.closed = False

    async def embed(self, texts: list[str], request: dict[str, Any] | None = None) -> Embeddings:
        return Embeddings(vectors=[[float(len(t))] for t in texts], prompt_tokens=1, model="m")

    def close(self) -> None:
        self.closed = True


class GatedLoader:
    """A load that blocks until ``release`` and counts how often it ran."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.calls = 0
        self.gate = threading.Event()
        self.error = error

    def __call__(self) -> Model:
        self.calls += 1
        self.gate.wait(timeout=30)
        if self.error is not None:
            raise self.error
        return Model()


async def waiting_for(lazy: LazyModel[Any]) -> None:
    async def loading() -> bool | None:
        return True if lazy.state == "loading" else None

    await eventually(loading, "the load to start")


async def test_concurrent_first_calls_share_one_load() -> None:
    loader = GatedLoader()
    lazy = LazyModel("m", loader)
    before = lazy.state
    callers = [asyncio.create_task(lazy.get()) for _ in range(20)]
    await waiting_for(lazy)
    loader.gate.set()
    models = await asyncio.gather(*callers)
    assert loader.calls == 1
    assert all(model is models[0] for model in models)
    assert (before, lazy.state) == ("not loaded", "loaded")
    assert await lazy.get() is models[0] and loader.calls == 1


async def test_a_caller_that_gives_up_does_not_cancel_the_load_for_the_others() -> None:
    loader = GatedLoader()
    lazy = LazyModel("m", loader)
    first, second = asyncio.create_task(lazy.get()), asyncio.create_task(lazy.get())
    await waiting_for(lazy)
    first.cancel()
    loader.gate.set()
    assert isinstance(await second, Model)
    assert first.cancelled() and loader.calls == 1


async def test_a_failed_load_is_a_clear_503_for_every_caller_and_is_not_retried() -> None:
    loader = GatedLoader(ModelFileCorrupted("refusing to load model.onnx: its sha256 is 00"))
    lazy = LazyModel("all-MiniLM-L6-v2", loader)
    callers = [asyncio.create_task(lazy.get()) for _ in range(5)]
    await waiting_for(lazy)
    loader.gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    for result in results:
        assert isinstance(result, ModelUnavailable)
        assert result.status == 503
        assert "all-MiniLM-L6-v2 could not be loaded" in str(result)
        assert "sha256 is 00" in str(result)
    with pytest.raises(ModelUnavailable, match="sha256 is 00"):
        await lazy.get()
    assert loader.calls == 1
    assert lazy.state == "failed"
    assert lazy.error == "ModelFileCorrupted: refusing to load model.onnx: its sha256 is 00"


async def test_close_closes_a_loaded_model_and_refuses_later_loads() -> None:
    loader = GatedLoader()
    loader.gate.set()
    embedder = LazyEmbedder("m", 1, loader)
    result = await embedder.embed(["abc"])
    assert result.vectors == [[3.0]]
    model = await embedder.lazy.get()
    embedder.close()
    assert model.closed

    never = LazyModel("n", GatedLoader())
    never.close()  # nothing loaded: nothing to close
    with pytest.raises(ModelUnavailable, match="shut down"):
        await never.get()


async def test_a_stuck_load_is_a_503_for_the_caller_not_a_hang_and_goes_on() -> None:
    loader = GatedLoader()
    lazy = LazyModel("m", loader, timeout_s=0.05)
    with pytest.raises(ModelUnavailable, match="m is still loading after") as caught:
        await lazy.get()
    assert caught.value.status == 503
    assert lazy.state == "loading"
    loader.gate.set()

    async def loaded() -> bool | None:
        return True if lazy.state == "loaded" else None

    await eventually(loaded, "the load to finish")
    assert isinstance(await lazy.get(), Model) and loader.calls == 1
