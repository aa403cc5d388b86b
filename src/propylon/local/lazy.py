"""Models loaded on first use instead of at start-up.

`propylon serve` is ready as soon as the database answers; the local MiniLM (0.3-0.6 s of CPU
and about 100 MB once loaded, onnxruntime included) waits for the first request that needs
it. With the static first stages a request often does not: a semantic-cache miss costs no
transformer call.

``LazyModel`` loads once, in a thread: callers that arrive while it loads wait for the same
load (one load, never two), a caller cancelled while waiting does not cancel it, and a load
that fails is remembered: every later call gets the same ``ModelUnavailable`` (503, with the
cause) at once instead of paying for another failing load, and ``/readyz`` reports the
process not ready, so an orchestrator restarts it once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, Literal, Protocol, TypeVar

from propylon.errors import ServiceUnavailable
from propylon.gateway.protocol import Embeddings

log = logging.getLogger(__name__)

State = Literal["not loaded", "loading", "loaded", "failed"]

LOAD_TIMEOUT_S = 120.0
"""How long a caller waits for a load under way before a 503 (the load goes on): MiniLM's
takes 0.3-0.6 s of CPU, a few seconds on a saturated host; past this something is stuck."""


class ModelUnavailable(ServiceUnavailable):
    """A model this process serves could not be loaded (its cause is in the message)."""


class Closable(Protocol):
    def close(self) -> None: ...


M = TypeVar("M", bound=Closable)


class LazyModel(Generic[M]):
    """``load()`` run once, on a thread of its own, the first time ``get`` is awaited."""

    def __init__(
        self, name: str, load: Callable[[], M], *, timeout_s: float = LOAD_TIMEOUT_S
    ) -> None:
        self.name = name
        self._load = load
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._future: Future[M] | None = None
        self._closed = False
        self.loaded: M | None = None  # the model once loaded: what every call after the first reads

    @property
    def state(self) -> State:
        future = self._future
        if future is None:
            return "not loaded"
        if not future.done():
            return "loading"
        return "failed" if future.exception() is not None else "loaded"

    @property
    def error(self) -> str | None:
        """Why the load failed (``None`` unless ``state`` is ``"failed"``)."""
        future = self._future
        if future is None or not future.done() or (exc := future.exception()) is None:
            return None
        return f"{type(exc).__name__}: {exc}"

    def start(self) -> Future[M]:
        """Begin loading (once; later calls return the same future)."""
        with self._lock:
            if self._closed:
                raise ModelUnavailable(f"local model {self.name} is shut down")
            if self._future is None:
                self._future = Future()
                threading.Thread(
                    target=self._run, args=(self._future,), name=f"load-{self.name}", daemon=True
                ).start()
            return self._future

    def _run(self, future: Future[M]) -> None:
        started = time.perf_counter()
        try:
            model = self._load()
        except BaseException as exc:  # every failure reaches the waiting callers
            log.error("local model %s failed to load", self.name, exc_info=exc)
            future.set_exception(exc)
            return
        log.info(
            "local model loaded",
            extra={"model": self.name, "seconds": round(time.perf_counter() - started, 3)},
        )
        self.loaded = model
        future.set_result(model)

    async def get(self) -> M:
        """The model, loading it on the first call; ``ModelUnavailable`` if it failed to load."""
        if self.loaded is not None:
            return self.loaded
        future = self.start()
        try:
            # Shielded: a caller that gives up (client gone, or the timeout) leaves the load
            # running for the others.
            async with asyncio.timeout(self._timeout_s):
                return await asyncio.shield(asyncio.wrap_future(future))
        except TimeoutError:
            if future.done():  # the load itself raised TimeoutError
                raise self._unavailable(future.exception()) from future.exception()
            raise ModelUnavailable(
                f"local model {self.name} is still loading after {self._timeout_s:.0f} s; "
                "try again later"
            ) from None
        except Exception as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: BaseException | None) -> ModelUnavailable:
        return ModelUnavailable(
            f"local model {self.name} could not be loaded ({type(exc).__name__}: {exc}); "
            "fix the cause and restart the server"
        )

    def close(self) -> None:
        """Close the model if it was loaded (waiting for a load under way); no later loads."""
        with self._lock:
            self._closed = True
            future = self._future
        if future is None:
            return
        try:
            model = future.result()
        except BaseException:
            return
        model.close()


class EmbeddingBackend(Closable, Protocol):
    async def embed(
        self, texts: list[str], request: dict[str, Any] | None = None
    ) -> Embeddings: ...


E = TypeVar("E", bound=EmbeddingBackend)


class LazyEmbedder(Generic[E]):
    """An ``EmbeddingModel`` whose model loads on the first ``embed``."""

    def __init__(self, model_id: str, dimensions: int, load: Callable[[], E]) -> None:
        self.model_id = model_id
        self.dimensions = dimensions
        self.lazy: LazyModel[E] = LazyModel(model_id, load)

    async def embed(self, texts: list[str], request: dict[str, Any] | None = None) -> Embeddings:
        model = self.lazy.loaded
        if model is None:
            model = await self.lazy.get()
        return await model.embed(texts, request)

    def close(self) -> None:
        self.lazy.close()
