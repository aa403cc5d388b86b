"""Retries, fallback and circuit breakers against two real fake upstreams over loopback."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from propylon.testing import Behaviour, FakeUpstream, Fault
from tests.support.servers import AppServer, serve_app

CHAT = "/v1/chat/completions"
BODY = {"model": "gpt-ha", "messages": [{"role": "user", "content": "are you there?"}]}


@pytest.fixture
async def secondary() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as fake:
        yield fake


def ha_models(primary: FakeUpstream, secondary: FakeUpstream, **deployment: Any) -> list[Any]:
    return [
        {
            "name": "gpt-ha",
            "deployments": [
                {
                    "provider": "openai",
                    "name": "primary",
                    "base_url": f"{primary.base_url}/v1",
                    **deployment,
                },
                {"provider": "openai", "name": "secondary", "base_url": f"{secondary.base_url}/v1"},
            ],
        }
    ]


@pytest.fixture
async def ha(
    database_url: str, upstream: FakeUpstream, secondary: FakeUpstream
) -> AsyncIterator[AppServer]:
    async with serve_app(
        database_url=database_url,
        # Long enough that a loaded machine never mistakes a slow answer for a stall, short
        # enough that the stall case (an upstream that hangs 30 s) costs 2 x 3 s.
        models=ha_models(upstream, secondary, first_token_timeout=3, response_timeout=3),
        retry={"attempts": 2, "base_delay_s": 0.01, "max_retry_after_s": 1},
        breaker={"window_s": 30, "min_calls": 4, "failure_ratio": 0.5, "cooldown_s": 0.5},
    ) as server:
        yield server


async def chat(server: AppServer, stream: bool = False) -> tuple[int, dict[str, str], bytes]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.v1}/chat/completions",
            json={**BODY, "stream": stream},
            headers=server.headers,
        ) as resp,
    ):
        return resp.status, dict(resp.headers), await resp.read()


@pytest.mark.parametrize(
    ("fault", "attempts"),
    [
        (Fault(kind="status", status=500), "3"),
        (Fault(kind="status", status=503), "3"),
        # The primary may have done (and billed) the work: not retried, fallen back from.
        (Fault(kind="timeout", hang_s=30), "2"),
        (Fault(kind="reset"), "3"),
        (Fault(kind="rate_limit", retry_after_s=0), "3"),
    ],
    ids=["500", "503", "timeout", "reset", "429"],
)
async def test_every_request_succeeds_when_the_primary_fails_for_good(
    ha: AppServer, upstream: FakeUpstream, secondary: FakeUpstream, fault: Fault, attempts: str
) -> None:
    upstream.set_behaviour(Behaviour(faults=(fault,)))
    status, headers, _ = await chat(ha)
    assert status == 200
    assert headers["x-propylon-deployment"] == "secondary"
    assert headers["x-propylon-attempts"] == attempts, "primary (retried), then the fallback"
    assert headers["x-propylon-route"].startswith("primary=")
    assert headers["x-propylon-route"].endswith("secondary=ok")
    assert secondary.calls[CHAT] == 1


async def test_a_transient_failure_is_retried_on_the_same_deployment(
    ha: AppServer, upstream: FakeUpstream, secondary: FakeUpstream
) -> None:
    upstream.set_behaviour(Behaviour(faults=(Fault(kind="status", status=502, times=1),)))
    status, headers, _ = await chat(ha)
    assert status == 200
    assert headers["x-propylon-deployment"] == "primary"
    assert headers["x-propylon-attempts"] == "2"
    assert secondary.calls.get(CHAT, 0) == 0


async def test_retry_after_from_a_429_is_waited_for(ha: AppServer, upstream: FakeUpstream) -> None:
    upstream.set_behaviour(
        Behaviour(faults=(Fault(kind="rate_limit", retry_after_s=0.3, times=1),))
    )
    started = time.monotonic()
    status, headers, _ = await chat(ha)
    assert status == 200
    assert headers["x-propylon-deployment"] == "primary"
    assert time.monotonic() - started >= 0.3


async def test_a_client_error_is_not_retried_nor_sent_elsewhere(
    ha: AppServer, upstream: FakeUpstream, secondary: FakeUpstream
) -> None:
    upstream.set_behaviour(Behaviour(faults=(Fault(kind="status", status=400),)))
    status, headers, body = await chat(ha)
    assert status == 400
    assert headers["x-propylon-attempts"] == "1"
    assert secondary.calls.get(CHAT, 0) == 0
    assert b'"error"' in body


async def test_a_stream_fails_over_before_its_first_byte(
    ha: AppServer, upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(Behaviour(faults=(Fault(kind="status", status=500),)))
    status, headers, body = await chat(ha, stream=True)
    assert status == 200
    assert headers["x-propylon-deployment"] == "secondary"
    assert body.rstrip().endswith(b"data: [DONE]")


async def test_breaker_opens_skips_the_dead_deployment_and_closes_after_a_probe(
    ha: AppServer, upstream: FakeUpstream, secondary: FakeUpstream
) -> None:
    upstream.set_behaviour(Behaviour(faults=(Fault(kind="status", status=500),)))
    for _ in range(2):  # 2 requests x 2 attempts = 4 failures: the breaker opens
        status, _, _ = await chat(ha)
        assert status == 200
    calls_when_open = upstream.calls[CHAT]
    for _ in range(5):
        status, headers, _ = await chat(ha)
        assert status == 200
        assert headers["x-propylon-route"].startswith("primary=skipped")
        assert headers["x-propylon-deployment"] == "secondary"
    assert upstream.calls[CHAT] == calls_when_open, "an open breaker makes no network call"

    upstream.set_behaviour(Behaviour())  # the primary recovers
    await asyncio.sleep(0.6)  # cooldown: the next call is a half-open probe
    status, headers, _ = await chat(ha)
    assert headers["x-propylon-deployment"] == "primary"
    status, headers, _ = await chat(ha)
    assert headers["x-propylon-route"] == "primary=ok", "closed again"


async def test_all_deployments_down_fails_fast_with_503_and_retry_after(
    ha: AppServer, upstream: FakeUpstream, secondary: FakeUpstream
) -> None:
    dead = Behaviour(faults=(Fault(kind="status", status=500),))
    upstream.set_behaviour(dead)
    secondary.set_behaviour(dead)
    statuses = [(await chat(ha))[0] for _ in range(3)]
    assert statuses == [502, 502, 503], "both breakers open after 2 x 2 failed calls each"
    calls = upstream.calls[CHAT] + secondary.calls[CHAT]
    status, headers, body = await chat(ha)
    assert status == 503  # fails fast: how fast is `propylon bench`'s to measure
    assert int(headers["Retry-After"]) >= 1
    assert b"all_deployments_unavailable" in body
    assert upstream.calls[CHAT] + secondary.calls[CHAT] == calls, "no network call at all"
