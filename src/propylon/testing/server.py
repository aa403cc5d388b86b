"""``FakeUpstream``: an OpenAI- and Anthropic-compatible LLM server for tests and benchmarks.

It speaks chat completions, legacy completions, the Responses API, embeddings and the model
list in OpenAI's wire format, rerank in the shape vLLM, Jina and Cohere share, and the
Messages API in Anthropic's.

Every API request passes one pipeline: record it, resolve its behaviour (server's, with the
``x-fake-behaviour`` header's fields over it), wait ``latency_ms``, check the API key, draw a
fault, then let the endpoint's handler answer. Errors are raised as ``WireError`` and
rendered in the endpoint's dialect, so handlers only describe the happy path.

``start()`` returns the root URL, e.g. ``http://127.0.0.1:PORT``. The Anthropic SDK takes it
as ``base_url`` as is; OpenAI SDKs want ``base_url + "/v1"``.
"""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pydantic
from aiohttp import web

from propylon.testing import (
    anthropic_api,
    completions_api,
    openai_api,
    rerank_api,
    responses_api,
)
from propylon.testing.behaviour import Behaviour
from propylon.testing.dialect import ANTHROPIC, OPENAI, Dialect
from propylon.testing.exchange import Exchange, Interrupted
from propylon.testing.fault_ledger import FaultLedger
from propylon.testing.wire_error import WireError, invalid_request

Handler = Callable[[Exchange], Awaitable[web.StreamResponse]]

OVERRIDE_HEADER = "x-fake-behaviour"

_ENDPOINTS: dict[str, tuple[str, Handler, Dialect]] = {
    "/v1/chat/completions": ("POST", openai_api.chat_completions, OPENAI),
    "/v1/completions": ("POST", completions_api.completions, OPENAI),
    "/v1/responses": ("POST", responses_api.responses, OPENAI),
    "/v1/embeddings": ("POST", openai_api.embeddings, OPENAI),
    "/v1/rerank": ("POST", rerank_api.rerank, OPENAI),
    "/v1/models": ("GET", openai_api.list_models, OPENAI),
    "/v1/messages": ("POST", anthropic_api.messages, ANTHROPIC),
}
_ANTHROPIC_VARIANTS: dict[str, tuple[Handler, Dialect]] = {
    "/v1/models": (anthropic_api.list_models, ANTHROPIC),
}
_SHUTDOWN_GRACE_S = 1.0


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """A request as the fake received it, so a test can assert what a translator sent."""

    method: str
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    query: dict[str, str] = field(default_factory=dict)


class FakeUpstream:
    """The fake server; use ``async with FakeUpstream(...) as upstream`` or start/stop."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self._initial = behaviour or Behaviour()
        self._behaviour = self._initial
        self._ledger = FaultLedger()
        self._calls: Counter[str] = Counter()
        self._last: dict[str, RecordedRequest] = {}
        self._left: Counter[str] = Counter()
        self._left_event = asyncio.Event()
        self._stopping = asyncio.Event()
        self._gate: asyncio.Event | None = None  # set: requests held before answering
        self._held = 0
        self._held_changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None

    async def __aenter__(self) -> FakeUpstream:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Listen on ``host:port`` (0 picks a free port) and return the root URL."""
        if self._runner is not None:
            raise RuntimeError("FakeUpstream is already started")
        self._stopping = asyncio.Event()
        runner = web.AppRunner(
            self.make_app(),
            access_log=None,
            handler_cancellation=True,
            shutdown_timeout=_SHUTDOWN_GRACE_S,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound_port = runner.addresses[0][1]
        authority = f"[{host}]" if ":" in host else host
        self._base_url = f"http://{authority}:{bound_port}"
        return self._base_url

    async def stop(self) -> None:
        """Stop at once: requests waiting (latency, a timeout fault) drop their connection."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping.set()
        await runner.cleanup()

    @property
    def base_url(self) -> str:
        """The root URL returned by ``start``; OpenAI SDKs want ``base_url + "/v1"``."""
        if self._base_url is None:
            raise RuntimeError("FakeUpstream is not started")
        return self._base_url

    @property
    def behaviour(self) -> Behaviour:
        return self._behaviour

    def set_behaviour(self, behaviour: Behaviour) -> None:
        """Replace the behaviour; fault budgets start afresh."""
        self._behaviour = behaviour
        self._ledger.clear()

    @property
    def calls(self) -> dict[str, int]:
        """Requests received per endpoint path, failed and faulted ones included."""
        return dict(self._calls)

    @property
    def clients_left(self) -> dict[str, int]:
        """Answers per endpoint path that the client hung up on before they were complete."""
        return dict(self._left)

    async def wait_client_left(self, endpoint: str, count: int = 1) -> None:
        """Return once ``count`` answers to ``endpoint`` were cut short by their client."""
        while self._left[endpoint] < count:
            self._left_event.clear()
            await self._left_event.wait()

    def last_request(self, endpoint: str) -> RecordedRequest | None:
        """The last request to ``endpoint`` (a path such as ``/v1/messages``)."""
        return self._last.get(endpoint)

    def hold(self) -> None:
        """Hold every request from now on after it is received (and counted in ``calls``)
        and before it is answered, until ``release()``: a test can act while the upstream is
        "working" without guessing how long that takes."""
        if self._gate is None or self._gate.is_set():
            self._gate = asyncio.Event()

    async def wait_held(self, count: int = 1) -> None:
        """Wait until ``count`` requests are being held (see ``hold``)."""
        async with self._held_changed:
            await self._held_changed.wait_for(lambda: self._held >= count)

    def release(self) -> None:
        """Answer the held requests, and stop holding new ones."""
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    def reset(self) -> None:
        """Forget calls and requests, restore fault budgets and the initial behaviour."""
        self._calls.clear()
        self._last.clear()
        self._left.clear()
        self.set_behaviour(self._initial)

    def make_app(self) -> web.Application:
        """The aiohttp application, for embedding the fake in another aiohttp server."""
        app = web.Application()
        for path, (method, _, _) in _ENDPOINTS.items():
            app.router.add_route(method, path, self._serve)
        app.router.add_route("*", "/v1/{tail:.*}", self._serve)
        app.router.add_get("/_fake/behaviour", self._get_behaviour)
        app.router.add_post("/_fake/behaviour", self._post_behaviour)
        app.router.add_get("/_fake/stats", self._get_stats)
        app.router.add_post("/_fake/reset", self._post_reset)
        return app

    async def _serve(self, request: web.Request) -> web.StreamResponse:
        handler, dialect = self._route(request)
        exchange = Exchange(request, {}, self._behaviour, None, dialect, self._stopping)
        try:
            exchange.body = await self._record(request)
            exchange.behaviour = _resolve(self._behaviour, request)
            await exchange.pause(exchange.behaviour.latency_ms / 1000)
            if self._gate is not None:
                await self._wait_at_gate(exchange, self._gate)
            _authorize(exchange)
            await self._strike_early(exchange)
            return await handler(exchange)
        except WireError as error:
            response = exchange.json(dialect.error_body(error), status=error.status)
            response.headers.update(error.headers)
            return response
        except Interrupted as interrupted:
            return interrupted.response or web.Response()
        except ConnectionError:  # the client left mid-answer; nothing to log
            self._client_left(request.path)
            return web.Response()
        except asyncio.CancelledError:  # aiohttp cancels the handler of a client that left
            if not self._stopping.is_set():
                self._client_left(request.path)
            raise

    def _client_left(self, path: str) -> None:
        self._left[path] += 1
        self._left_event.set()

    async def _wait_at_gate(self, exchange: Exchange, gate: asyncio.Event) -> None:
        async with self._held_changed:
            self._held += 1
            self._held_changed.notify_all()
        try:
            await exchange.wait_for(gate)
        finally:
            self._held -= 1

    def _route(self, request: web.Request) -> tuple[Handler, Dialect]:
        variant = _ANTHROPIC_VARIANTS.get(request.path)
        if variant is not None and "anthropic-version" in request.headers:
            return variant
        endpoint = _ENDPOINTS.get(request.path)
        if endpoint is None or endpoint[0] != request.method:
            return _unknown_url, OPENAI
        return endpoint[1], endpoint[2]

    async def _record(self, request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            body = None
        self._calls[request.path] += 1
        self._last[request.path] = RecordedRequest(
            method=request.method,
            path=request.path,
            headers={key.lower(): value for key, value in request.headers.items()},
            body=body if isinstance(body, dict) else {},
            query=dict(request.query),
        )
        if not isinstance(body, dict):
            raise invalid_request("We could not parse the JSON body of your request.")
        return body

    async def _strike_early(self, exchange: Exchange) -> None:
        """Draw this request's fault and apply it if it strikes before any response."""
        body = exchange.body
        model = body.get("model")
        exchange.fault = fault = self._ledger.take(
            exchange.behaviour.faults,
            exchange.request.path,
            model if isinstance(model, str) else None,
            body.get("stream") is True,
        )
        if fault is None:
            return
        if fault.kind == "status":
            raise WireError(fault.status, fault.message)
        if fault.kind == "rate_limit":
            seconds = fault.retry_after_s
            headers = {"Retry-After": f"{seconds:g}", "retry-after-ms": str(round(seconds * 1000))}
            raise WireError(429, fault.message, headers=headers)
        if fault.kind == "timeout":
            await exchange.pause(fault.hang_s)
            exchange.drop(reset=True)
        if fault.kind == "reset":
            exchange.drop(reset=True)

    async def _get_behaviour(self, _: web.Request) -> web.Response:
        return _control_json(self._behaviour.model_dump(mode="json"))

    async def _post_behaviour(self, request: web.Request) -> web.Response:
        try:
            behaviour = Behaviour.from_json(await request.read())
        except pydantic.ValidationError as error:
            return _control_json({"error": str(error)}, status=400)
        self.set_behaviour(behaviour)
        return _control_json(behaviour.model_dump(mode="json"))

    async def _get_stats(self, _: web.Request) -> web.Response:
        return _control_json(
            {
                "calls": self.calls,
                "last_requests": {path: seen.body for path, seen in self._last.items()},
            }
        )

    async def _post_reset(self, _: web.Request) -> web.Response:
        self.reset()
        return _control_json({"reset": True})


def run_fake_upstream(
    host: str = "127.0.0.1", port: int = 8089, behaviour: Behaviour | None = None
) -> None:
    """Serve until SIGINT or SIGTERM; the blocking entry point of ``propylon fake-upstream``."""
    asyncio.run(_serve_forever(host, port, behaviour))


async def _serve_forever(host: str, port: int, behaviour: Behaviour | None) -> None:
    upstream = FakeUpstream(behaviour)
    url = await upstream.start(host, port)
    print(f"fake upstream on {url} (OpenAI SDK base_url: {url}/v1)", flush=True)
    done = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, done.set)
    try:
        await done.wait()
    finally:
        await upstream.stop()


def _resolve(behaviour: Behaviour, request: web.Request) -> Behaviour:
    """The server's behaviour with the override header's fields over it."""
    header = request.headers.get(OVERRIDE_HEADER)
    if header is None:
        return behaviour
    try:
        fields = orjson.loads(header)
        if not isinstance(fields, dict):
            raise TypeError("expected a JSON object")
        return behaviour.overridden_by(fields)
    except (orjson.JSONDecodeError, TypeError, pydantic.ValidationError) as error:
        raise invalid_request(f"{OVERRIDE_HEADER}: {error}") from error


def _authorize(exchange: Exchange) -> None:
    expected = exchange.behaviour.require_api_key
    if expected is not None and exchange.dialect.api_key(exchange.request.headers) != expected:
        raise WireError(401)


async def _unknown_url(exchange: Exchange) -> web.StreamResponse:
    request = exchange.request
    raise WireError(404, f"Invalid URL ({request.method} {request.path})", code="unknown_url")


def _control_json(payload: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type="application/json")
