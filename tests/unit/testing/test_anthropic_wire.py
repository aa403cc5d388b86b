"""The fake speaks Anthropic's Messages API well enough for the official SDK."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import anthropic
import pytest
from anthropic.types import MessageParam, ToolParam

from propylon.testing import FakeUpstream

COMPLETION_TOKENS = 8  # as the `upstream` fixture sets
QUESTION: list[MessageParam] = [{"role": "user", "content": "Name three rivers in Europe"}]
SEARCH_TOOL: ToolParam = {
    "name": "search",
    "description": "Search the web.",
    "input_schema": {
        "type": "object",
        "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}},
        "required": ["query"],
    },
}
VERSION = {"anthropic-version": "2023-06-01", "x-api-key": "sk-ant-test"}


@pytest.fixture
async def client(upstream: FakeUpstream) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=upstream.base_url, api_key="sk-ant-test", max_retries=0
    ) as sdk:
        yield sdk


async def test_message_echoes_the_user_and_records_the_system_prompt(
    client: anthropic.AsyncAnthropic, upstream: FakeUpstream
) -> None:
    message = await client.messages.create(
        model="fake-claude", max_tokens=100, system="You are terse.", messages=QUESTION
    )

    assert message.type == "message"
    assert message.role == "assistant"
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith("Echo: Name three rivers in Europe")
    assert message.stop_reason == "end_turn"
    assert message.stop_sequence is None
    assert message.usage.input_tokens == 8
    assert message.usage.output_tokens == COMPLETION_TOKENS
    seen = upstream.last_request("/v1/messages")
    assert seen is not None
    assert seen.body["system"] == "You are terse."
    assert "anthropic-version" in seen.headers


async def test_max_tokens_cuts_the_message(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(model="fake-claude", max_tokens=2, messages=QUESTION)

    assert message.content[0].type == "text"
    assert message.content[0].text == "Echo: Name"
    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 2


async def test_stop_sequence_ends_the_message_before_it(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(
        model="fake-claude", max_tokens=100, messages=QUESTION, stop_sequences=["rivers"]
    )

    assert message.content[0].type == "text"
    assert message.content[0].text == "Echo: Name three "
    assert message.stop_reason == "stop_sequence"
    assert message.stop_sequence == "rivers"


async def test_forced_tool_answers_with_a_tool_use_block(client: anthropic.AsyncAnthropic) -> None:
    message = await client.messages.create(
        model="fake-claude",
        max_tokens=100,
        messages=QUESTION,
        tools=[SEARCH_TOOL],
        tool_choice={"type": "tool", "name": "search"},
    )

    block = message.content[0]
    assert block.type == "tool_use"
    assert block.name == "search"
    assert block.id.startswith("toolu_")
    assert isinstance(block.input, dict)
    assert set(block.input) == {"query", "limit"}
    assert message.stop_reason == "tool_use"


async def test_stream_sends_anthropic_events_that_assemble_the_message(
    client: anthropic.AsyncAnthropic,
) -> None:
    whole = await client.messages.create(model="fake-claude", max_tokens=100, messages=QUESTION)
    async with client.messages.stream(
        model="fake-claude", max_tokens=100, messages=QUESTION
    ) as stream:
        texts = [text async for text in stream.text_stream]
        final = await stream.get_final_message()

    assert whole.content[0].type == "text"
    assert "".join(texts) == whole.content[0].text
    assert len(texts) == COMPLETION_TOKENS
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == COMPLETION_TOKENS


async def test_streamed_tool_use_assembles_the_same_input(
    client: anthropic.AsyncAnthropic,
) -> None:
    whole = await client.messages.create(
        model="fake-claude",
        max_tokens=100,
        messages=QUESTION,
        tools=[SEARCH_TOOL],
        tool_choice={"type": "any"},
    )
    async with client.messages.stream(
        model="fake-claude",
        max_tokens=100,
        messages=QUESTION,
        tools=[SEARCH_TOOL],
        tool_choice={"type": "any"},
    ) as stream:
        final = await stream.get_final_message()

    assert final.content[0].type == "tool_use"
    assert whole.content[0].type == "tool_use"
    assert final.content[0].input == whole.content[0].input
    assert final.stop_reason == "tool_use"


async def test_stream_event_order_is_anthropics(
    upstream: FakeUpstream, http: aiohttp.ClientSession
) -> None:
    body = {"model": "fake-claude", "max_tokens": 2, "messages": QUESTION, "stream": True}
    async with http.post(upstream.base_url + "/v1/messages", json=body, headers=VERSION) as r:
        text = await r.text()

    names = [line[len("event: ") :] for line in text.splitlines() if line.startswith("event: ")]
    assert names == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        ({"model": "m", "messages": QUESTION}, VERSION, "max_tokens: Field required"),
        ({"model": "m", "max_tokens": 5, "messages": QUESTION}, {}, "anthropic-version"),
        ({"model": "m", "max_tokens": 5, "messages": []}, VERSION, "messages"),
    ],
    ids=["no-max-tokens", "no-version-header", "no-messages"],
)
async def test_requests_anthropic_rejects_get_invalid_request_error(
    upstream: FakeUpstream,
    http: aiohttp.ClientSession,
    body: dict[str, object],
    headers: dict[str, str],
    message: str,
) -> None:
    async with http.post(upstream.base_url + "/v1/messages", json=body, headers=headers) as r:
        error = await r.json()

    assert r.status == 400
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]


async def test_models_list_in_anthropic_shape(client: anthropic.AsyncAnthropic) -> None:
    models = [model.id async for model in client.models.list()]

    assert "fake-claude" in models
