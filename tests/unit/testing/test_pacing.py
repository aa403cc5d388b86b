"""Latency, time to first token and token rate shape when bytes arrive (generous bounds)."""

from __future__ import annotations

import time

import aiohttp

from propylon.testing import Behaviour, FakeUpstream

STREAM = {
    "model": "fake-gpt",
    "messages": [{"role": "user", "content": "hello"}],
    "stream": True,
}


async def test_latency_and_ttft_delay_headers_and_first_event(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    upstream.set_behaviour(Behaviour(latency_ms=60, ttft_ms=60))

    started = time.monotonic()
    async with http.post(upstream.base_url + "/v1/chat/completions", json=STREAM) as response:
        headers_at = time.monotonic() - started
        await response.content.readline()
        first_event_at = time.monotonic() - started
        await response.read()

    assert headers_at >= 0.05
    assert first_event_at >= 0.1
    assert first_event_at < 2.0


async def test_tokens_per_second_paces_the_stream(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    upstream.set_behaviour(Behaviour(tokens_per_second=200, completion_tokens=11))

    started = time.monotonic()
    async with http.post(upstream.base_url + "/v1/chat/completions", json=STREAM) as response:
        await response.read()

    assert 0.045 <= time.monotonic() - started < 20.0  # paced, and not stuck


async def test_non_streamed_answer_waits_for_the_whole_generation(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    upstream.set_behaviour(Behaviour(ttft_ms=20, tokens_per_second=200, completion_tokens=11))
    body = {**STREAM, "stream": False}

    started = time.monotonic()
    async with http.post(upstream.base_url + "/v1/chat/completions", json=body) as response:
        await response.read()

    assert 0.07 <= time.monotonic() - started < 20.0  # paced, and not stuck
