"""Tests and shell users steer the fake at run time: control endpoints, headers, API keys."""

from __future__ import annotations

from typing import Any

import aiohttp
import anthropic
import pytest
from anthropic.types import MessageParam

from propylon.testing import OVERRIDE_HEADER, Behaviour, FakeUpstream

CHAT = "/v1/chat/completions"
HELLO = {"model": "fake-gpt", "messages": [{"role": "user", "content": "hello"}]}


async def post_json(
    http: aiohttp.ClientSession,
    url: str,
    body: object,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any]:
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, await response.json()


async def test_posted_behaviour_replaces_the_current_one(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    status, echoed = await post_json(
        http, upstream.base_url + "/_fake/behaviour", {"completion_tokens": 3}
    )
    _, completion = await post_json(http, upstream.base_url + CHAT, HELLO)

    assert status == 200
    assert echoed["completion_tokens"] == 3
    assert echoed["latency_ms"] == 0
    assert upstream.behaviour.completion_tokens == 3
    assert completion["usage"]["completion_tokens"] == 3
    async with http.get(upstream.base_url + "/_fake/behaviour") as response:
        assert (await response.json())["completion_tokens"] == 3


async def test_posted_behaviour_with_an_unknown_field_is_rejected(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    status, error = await post_json(http, upstream.base_url + "/_fake/behaviour", {"latency": 5})

    assert status == 400
    assert "latency" in error["error"]
    assert upstream.behaviour == Behaviour(completion_tokens=8)


async def test_stats_count_calls_and_keep_the_last_body_per_endpoint(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    await post_json(http, upstream.base_url + CHAT, HELLO)
    await post_json(http, upstream.base_url + CHAT, {**HELLO, "temperature": 0.5})
    await post_json(http, upstream.base_url + "/v1/embeddings", {"model": "e", "input": "x"})

    async with http.get(upstream.base_url + "/_fake/stats") as response:
        stats = await response.json()

    assert stats["calls"] == {CHAT: 2, "/v1/embeddings": 1}
    assert stats["last_requests"][CHAT]["temperature"] == 0.5
    assert upstream.calls == stats["calls"]


async def test_reset_forgets_calls_and_restores_the_initial_behaviour(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    upstream.set_behaviour(Behaviour(completion_tokens=2))
    await post_json(http, upstream.base_url + CHAT, HELLO)

    status, _ = await post_json(http, upstream.base_url + "/_fake/reset", {})

    assert status == 200
    assert upstream.calls == {}
    assert upstream.last_request(CHAT) is None
    assert upstream.behaviour.completion_tokens == 8


async def test_header_overrides_fields_for_one_request(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    url = upstream.base_url + CHAT
    _, short = await post_json(http, url, HELLO, {OVERRIDE_HEADER: '{"completion_tokens": 2}'})
    _, default = await post_json(http, url, HELLO)

    assert short["choices"][0]["message"]["content"] == "Echo: hello"
    assert default["usage"]["completion_tokens"] == 8


async def test_malformed_header_is_a_400_naming_it(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    headers = {OVERRIDE_HEADER: '{"completion_tokens": 0}'}
    status, error = await post_json(http, upstream.base_url + CHAT, HELLO, headers)

    assert status == 400
    assert OVERRIDE_HEADER in error["error"]["message"]


async def test_invalid_json_body_is_a_400_and_still_counted(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    async with http.post(upstream.base_url + CHAT, data=b"{nope") as response:
        error = await response.json()

    assert response.status == 400
    assert error["error"]["type"] == "invalid_request_error"
    assert upstream.calls[CHAT] == 1


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Authorization": "Bearer sk-right"}, 200),
        ({"Authorization": "Bearer sk-wrong"}, 401),
        ({}, 401),
    ],
    ids=["right", "wrong", "missing"],
)
async def test_required_api_key_guards_openai_endpoints(
    upstream: FakeUpstream, http: aiohttp.ClientSession, headers: dict[str, str], status: int
) -> None:
    upstream.set_behaviour(Behaviour(require_api_key="sk-right"))

    answered, body = await post_json(http, upstream.base_url + CHAT, HELLO, headers)

    assert answered == status
    if status == 401:
        assert body["error"]["code"] == "invalid_api_key"


async def test_required_api_key_guards_messages_in_anthropic_shape(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    upstream.set_behaviour(Behaviour(require_api_key="sk-ant-right"))
    turns: list[MessageParam] = [{"role": "user", "content": "hi"}]
    body = {"model": "c", "max_tokens": 5, "messages": turns}
    url = upstream.base_url + "/v1/messages"
    version = {"anthropic-version": "2023-06-01"}

    wrong, error = await post_json(http, url, body, {**version, "x-api-key": "sk-ant-wrong"})
    right, _ = await post_json(http, url, body, {**version, "x-api-key": "sk-ant-right"})
    async with anthropic.AsyncAnthropic(
        base_url=upstream.base_url, api_key="sk-ant-right", max_retries=0
    ) as sdk:
        message = await sdk.messages.create(model="c", max_tokens=5, messages=turns)

    assert wrong == 401
    assert error["error"]["type"] == "authentication_error"
    assert right == 200
    assert message.stop_reason == "max_tokens"


async def test_unknown_v1_path_is_an_openai_404(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    status, error = await post_json(http, upstream.base_url + "/v1/assistants", {})

    assert status == 404
    assert error["error"]["code"] == "unknown_url"
