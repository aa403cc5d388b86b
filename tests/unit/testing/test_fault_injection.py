"""Injected faults fail requests the way real providers and networks do."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson
import pytest

from propylon.testing import OVERRIDE_HEADER, FakeUpstream, Fault

CHAT = "/v1/chat/completions"
MESSAGES = "/v1/messages"
EMBEDDINGS = "/v1/embeddings"
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01", "x-api-key": "k"}


def chat(*, stream: bool = False, model: str = "fake-gpt") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


def message(*, stream: bool = False) -> dict[str, Any]:
    return {
        "model": "fake-claude",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
        "stream": stream,
    }


def inject(upstream: FakeUpstream, *faults: Fault) -> None:
    upstream.set_behaviour(upstream.behaviour.model_copy(update={"faults": faults}))


async def status_of(
    http: aiohttp.ClientSession,
    url: str,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> int:
    async with http.post(url, json=body, headers=headers) as response:
        await response.read()
        return response.status


async def test_status_fault_answers_an_openai_shaped_error(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    inject(upstream, Fault(kind="status", status=503))

    async with http.post(upstream.base_url + CHAT, json=chat()) as response:
        body = await response.json()

    assert response.status == 503
    assert body["error"]["type"] == "server_error"
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert "x-request-id" in response.headers


async def test_status_fault_on_messages_answers_an_anthropic_shaped_error(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    inject(upstream, Fault(kind="status", status=529))

    url = upstream.base_url + MESSAGES
    async with http.post(url, json=message(), headers=ANTHROPIC_HEADERS) as response:
        body = await response.json()

    assert response.status == 529
    assert body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    assert "request-id" in response.headers


@pytest.mark.parametrize(
    ("path", "headers", "error_type"),
    [(CHAT, {}, "requests"), (MESSAGES, ANTHROPIC_HEADERS, "rate_limit_error")],
    ids=["openai", "anthropic"],
)
async def test_rate_limit_fault_sends_429_with_retry_after(
    upstream: FakeUpstream,
    http: aiohttp.ClientSession,
    path: str,
    headers: dict[str, str],
    error_type: str,
) -> None:
    inject(upstream, Fault(kind="rate_limit", retry_after_s=2))

    body = message() if path == MESSAGES else chat()
    async with http.post(upstream.base_url + path, json=body, headers=headers) as response:
        error = await response.json()

    assert response.status == 429
    assert response.headers["Retry-After"] == "2"
    assert response.headers["retry-after-ms"] == "2000"
    assert error_type in orjson.dumps(error).decode()


async def test_reset_fault_drops_the_connection_before_any_response(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    inject(upstream, Fault(kind="reset"))

    with pytest.raises(aiohttp.ClientConnectionError):
        await status_of(http, upstream.base_url + CHAT, chat())


async def test_timeout_fault_hangs_past_the_client_timeout(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    inject(upstream, Fault(kind="timeout", hang_s=30))

    with pytest.raises(TimeoutError):
        async with http.post(
            upstream.base_url + CHAT, json=chat(), timeout=aiohttp.ClientTimeout(total=0.2)
        ):
            pass


async def test_stop_is_prompt_while_a_request_hangs(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    inject(upstream, Fault(kind="timeout", hang_s=60))
    hanging = asyncio.create_task(status_of(http, upstream.base_url + CHAT, chat()))
    for _ in range(200):
        if upstream.calls.get(CHAT):
            break
        await asyncio.sleep(0.01)

    started = time.monotonic()
    await upstream.stop()

    assert time.monotonic() - started < 20.0  # not the 60 s of the hanging request
    with pytest.raises(aiohttp.ClientConnectionError):
        await hanging


async def test_stream_cut_drops_the_connection_after_k_chunks(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    inject(upstream, Fault(kind="stream_cut", after_chunks=3))

    lines: list[bytes] = []

    async def read_lines(response: aiohttp.ClientResponse) -> None:
        async for line in response.content:
            lines.append(line)

    async with http.post(upstream.base_url + CHAT, json=chat(stream=True)) as response:
        assert response.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await read_lines(response)

    events = [line for line in lines if line.startswith(b"data: ")]
    assert len(events) == 3
    assert b"data: [DONE]\n" not in lines


async def test_stream_error_sends_an_anthropic_error_event_mid_stream(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    inject(upstream, Fault(kind="stream_error", status=529, after_chunks=4))

    url = upstream.base_url + MESSAGES
    async with http.post(url, json=message(stream=True), headers=ANTHROPIC_HEADERS) as response:
        text = await response.text()

    names = [line.removeprefix("event: ") for line in text.splitlines() if "event:" in line]
    assert names[-2:] == ["content_block_delta", "error"]
    assert len(names) == 5
    assert '"type":"overloaded_error"' in text


async def test_fault_with_times_fails_the_first_requests_then_recovers(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    inject(upstream, Fault(kind="status", status=500, times=2))

    statuses = [await status_of(http, upstream.base_url + CHAT, chat()) for _ in range(3)]

    assert statuses == [500, 500, 200]
    assert upstream.calls[CHAT] == 3


async def test_fault_strikes_only_the_endpoints_and_models_it_names(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    inject(upstream, Fault(kind="status", status=500, endpoints=(CHAT,), models=("bad",)))
    embedding = {"model": "bad", "input": "hi"}

    assert await status_of(http, upstream.base_url + CHAT, chat(model="bad")) == 500
    assert await status_of(http, upstream.base_url + CHAT, chat(model="good")) == 200
    assert await status_of(http, upstream.base_url + EMBEDDINGS, embedding) == 200


async def test_stream_faults_pass_plain_requests_without_spending_their_budget(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    inject(upstream, Fault(kind="stream_cut", times=1))

    assert await status_of(http, upstream.base_url + CHAT, chat()) == 200
    with pytest.raises(aiohttp.ClientPayloadError):
        await status_of(http, upstream.base_url + CHAT, chat(stream=True))
    assert await status_of(http, upstream.base_url + CHAT, chat(stream=True)) == 200


async def test_header_fault_applies_to_that_request_only(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    override = {OVERRIDE_HEADER: '{"faults": [{"kind": "status", "status": 418}]}'}

    assert await status_of(http, upstream.base_url + CHAT, chat(), override) == 418
    assert await status_of(http, upstream.base_url + CHAT, chat()) == 200


async def test_header_fault_with_times_keeps_its_budget_across_requests(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    override = {OVERRIDE_HEADER: '{"faults": [{"kind": "status", "status": 502, "times": 1}]}'}
    url = upstream.base_url + CHAT

    assert [await status_of(http, url, chat(), override) for _ in range(2)] == [502, 200]
