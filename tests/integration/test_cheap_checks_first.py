"""The request path refuses in order of cost: a request the gateway would refuse anyway (too
many messages, every deployment down) is refused before the guard's classifier embeds a single
message (issue 27); a client over its rate limit is refused before the guard reads its text
(issue 26).

What is asserted is the work each refusal does (calls counted on the classifier, its embedder
and the token counter), not its time: how fast these refusals are is measured, in the same
run as references, by `bench/refusals.py` (docs/benchmarks.md, "Refusals")."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from propylon.access.limits import Limits
from propylon.gateway.circuit_breaker import BreakerState
from propylon.testing import FakeUpstream
from propylon.tokens import TokenCounter
from tests.support.servers import AppServer, serve_app


class Counted:
    """Counts the calls of one async method of an object and passes them on."""

    def __init__(self, owner: Any, name: str) -> None:
        self.calls = 0
        real = getattr(owner, name)

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return await real(*args, **kwargs)

        setattr(owner, name, counted)


class CountedEmbeddings:
    """Counts the guard's MiniLM calls, whichever of its readers makes them (the exact model,
    or the int8 one that reads user input first: ``guard.user_int8``)."""

    def __init__(self, detector: Any) -> None:
        self.counters = [Counted(plain, "embed") for plain, _ in detector._readers.values()]

    @property
    def calls(self) -> int:
        return sum(counter.calls for counter in self.counters)


def count_tokenising(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the ``TokenCounter`` methods called from now on, one entry a call."""
    calls: list[str] = []
    for name in ("count_messages", "count_text"):
        real = getattr(TokenCounter, name)

        def counted(self: TokenCounter, *args: Any, _real: Any = real, _name: str = name) -> Any:
            calls.append(_name)
            return _real(self, *args)

        monkeypatch.setattr(TokenCounter, name, counted)
    return calls


@pytest.fixture
async def server(database_url: str, upstream: FakeUpstream) -> AsyncIterator[AppServer]:
    models = [
        {
            "name": "gpt-test",
            # Small enough that an admitted prompt of 1,000 characters is tokenised against it.
            "context_window": 1_000,
            "deployments": [
                {"provider": "openai", "base_url": f"{upstream.base_url}/v1", "model": "fake-gpt"},
                {"provider": "openai", "base_url": f"{upstream.base_url}/v1", "model": "fake-2"},
            ],
        }
    ]
    async with serve_app(
        database_url=database_url,
        models=models,
        breaker={"min_calls": 1, "cooldown_s": 600},
    ) as running:
        yield running


async def post(http: aiohttp.ClientSession, server: AppServer, body: bytes) -> tuple[int, Any]:
    """Status and body of one chat request."""
    async with http.post(
        f"{server.v1}/chat/completions",
        data=io.BytesIO(body),
        headers={**server.headers, "Content-Type": "application/json"},
    ) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_a_hundred_thousand_messages_are_refused_before_anything_is_counted_or_embedded(
    server: AppServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before issue 27, this request cost 69 s of CPU and 2 GB: every message was counted and
    embedded before the refusal. Now nothing is; an admitted request, sent after it to the
    same counters, shows they would have seen that work."""
    detector = server.app.state.services.detector
    assert detector is not None, "the guard is on by default"
    classified = Counted(detector, "scan_many")
    embedded = CountedEmbeddings(detector)
    tokenised = count_tokenising(monkeypatch)
    messages = [{"role": "user", "content": f"message {n}"} for n in range(100_000)]
    body = orjson.dumps({"model": "gpt-test", "messages": messages})
    assert len(body) > 3_000_000
    async with aiohttp.ClientSession() as http:
        status, error = await post(http, server, body)
        assert status == 400, error
        assert error["error"]["code"] == "array_above_max_length"
        assert error["error"]["param"] == "messages"
        assert "100000 items" in error["error"]["message"]
        assert (classified.calls, embedded.calls, tokenised) == (0, 0, [])

        one = [{"role": "user", "content": "a prompt the guard has not seen yet. " * 28}]
        status, answer = await post(
            http, server, orjson.dumps({"model": "gpt-test", "messages": one})
        )
        assert status == 200, answer
    assert classified.calls == 1 and embedded.calls >= 1 and "count_messages" in tokenised


async def test_every_deployment_down_is_refused_without_running_the_classifier(
    server: AppServer,
) -> None:
    services = server.app.state.services
    for breaker in services.gateway.breakers().values():
        assert breaker.allow()
        breaker.record_failure()
        assert breaker.state is BreakerState.OPEN
    classified = Counted(services.detector, "scan_many")
    embedded = CountedEmbeddings(services.detector)
    async with aiohttp.ClientSession() as http:
        for n in range(20):
            prompt = f"a new prompt, never seen before: number {n}"
            body = orjson.dumps(
                {"model": "gpt-test", "messages": [{"role": "user", "content": prompt}]}
            )
            status, error = await post(http, server, body)
            assert status == 503, error
            assert error["error"]["code"] == "all_deployments_unavailable"
    # Before, the classifier embedded each new prompt first (5.6 ms p99 of the refusal); the
    # refusal's time is measured by bench/refusals.py.
    assert (classified.calls, embedded.calls) == (0, 0)


async def test_a_client_over_its_rate_limit_is_refused_before_the_guard_reads_its_text(
    server: AppServer,
) -> None:
    services = server.app.state.services
    key, _ = await services.access.create_key("over-the-limit", limits=Limits(rpm=1))
    classified = Counted(services.detector, "scan_many")
    body = orjson.dumps({"model": "gpt-test", "messages": [{"role": "user", "content": "hello"}]})
    async with aiohttp.ClientSession() as http:
        statuses = []
        for _ in range(2):
            async with http.post(
                f"{server.v1}/chat/completions",
                data=body,
                headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
            ) as resp:
                statuses.append((resp.status, (await resp.json())))
    assert statuses[0][0] == 200, statuses[0]
    assert statuses[1][0] == 429, statuses[1]
    assert statuses[1][1]["error"]["code"] == "rate_limit_exceeded"
    assert classified.calls == 1  # the admitted request only
