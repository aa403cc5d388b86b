"""`/v1/messages` with the official anthropic SDK, served by an OpenAI-compatible deployment
(translated) and by an Anthropic deployment (spoken to in its own API again)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anthropic
import pytest
from anthropic.types import MessageParam, ToolParam

from propylon.testing import Behaviour, FakeUpstream
from propylon.testing.behaviour import Fault
from tests.support.canary import without_canary
from tests.support.servers import AppServer, anthropic_sdk, serve_app

WEATHER: ToolParam = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}
QUESTION: list[MessageParam] = [{"role": "user", "content": "What is the weather in Paris?"}]


def models(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [
        {
            "name": "gpt-test",
            "deployments": [
                {"provider": "openai", "base_url": f"{upstream.base_url}/v1", "model": "fake-gpt"}
            ],
        },
        {
            "name": "claude-test",
            "deployments": [
                {"provider": "anthropic", "base_url": upstream.base_url, "model": "fake-claude"}
            ],
        },
    ]


UPSTREAM_PATH = {"gpt-test": "/v1/chat/completions", "claude-test": "/v1/messages"}


@pytest.fixture
async def server(database_url: str, upstream: FakeUpstream) -> AsyncIterator[AppServer]:
    async with serve_app(database_url=database_url, models=models(upstream)) as running:
        yield running


@pytest.fixture
async def sdk(server: AppServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic_sdk(server) as client:
        yield client


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
async def test_plain_message(
    sdk: anthropic.AsyncAnthropic, upstream: FakeUpstream, model: str
) -> None:
    message = await sdk.messages.create(
        model=model,
        max_tokens=100,
        system="You are terse.",
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        stop_sequences=["###"],
    )
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == model
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.content[0].text.startswith("Echo: What is the capital")
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens > 0
    sent = upstream.last_request(UPSTREAM_PATH[model])
    assert sent is not None
    if model == "gpt-test":
        system = sent.body["messages"][0]
        assert system["role"] == "system" and without_canary(system["content"]) == "You are terse."
        assert sent.body["stop"] == ["###"]
    else:
        assert without_canary(sent.body["system"]) == "You are terse."
        assert sent.body["stop_sequences"] == ["###"]


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
async def test_streamed_message_uses_anthropics_events(
    sdk: anthropic.AsyncAnthropic, model: str
) -> None:
    kinds: list[str] = []
    text = ""
    async with sdk.messages.stream(model=model, max_tokens=100, messages=QUESTION) as stream:
        async for event in stream:
            kinds.append(event.type)
            if event.type == "text":
                text += event.text
        final = await stream.get_final_message()
    assert kinds[0] == "message_start"
    assert "content_block_start" in kinds and "content_block_delta" in kinds
    assert kinds[-2:] == ["message_delta", "message_stop"] or kinds[-1] == "message_stop"
    assert text.startswith("Echo: What is the weather")
    assert final.content[0].type == "text"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
async def test_tool_use_round_trip(
    sdk: anthropic.AsyncAnthropic, upstream: FakeUpstream, model: str
) -> None:
    first = await sdk.messages.create(
        model=model,
        max_tokens=100,
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    )
    assert first.stop_reason == "tool_use"
    uses = [block for block in first.content if block.type == "tool_use"]
    assert len(uses) == 1
    use = uses[0]
    assert use.name == "get_weather"
    assert isinstance(use.input, dict) and "city" in use.input

    second = await sdk.messages.create(
        model=model,
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            *QUESTION,
            {"role": "assistant", "content": first.content},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": use.id, "content": "Sunny, 24 C"},
                    {"type": "text", "text": "Should I take a coat?"},
                ],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    assert second.content[0].type == "text"
    sent = upstream.last_request(UPSTREAM_PATH[model])
    assert sent is not None
    if model == "gpt-test":
        assert sent.body["messages"][-2] == {
            "role": "tool",
            "tool_call_id": use.id,
            "content": "Sunny, 24 C",
        }
        assert sent.body["messages"][-1] == {"role": "user", "content": "Should I take a coat?"}
    else:
        last = sent.body["messages"][-1]
        assert last["role"] == "user"
        assert last["content"][0]["type"] == "tool_result"


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
async def test_streamed_tool_use(sdk: anthropic.AsyncAnthropic, model: str) -> None:
    async with sdk.messages.stream(
        model=model,
        max_tokens=100,
        messages=QUESTION,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    use = next(block for block in final.content if block.type == "tool_use")
    assert use.name == "get_weather"
    assert isinstance(use.input, dict) and "city" in use.input


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
async def test_count_tokens(sdk: anthropic.AsyncAnthropic, model: str) -> None:
    short = await sdk.messages.count_tokens(model=model, messages=QUESTION)
    longer = await sdk.messages.count_tokens(
        model=model, system="You are a careful meteorologist.", messages=QUESTION, tools=[WEATHER]
    )
    assert 0 < short.input_tokens < longer.input_tokens


async def test_x_api_key_is_the_key_header_and_errors_are_in_anthropics_shape(
    server: AppServer,
) -> None:
    body = {"model": "gpt-test", "max_tokens": 10, "messages": QUESTION}
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{server.url}/v1/messages", json=body, headers={"x-api-key": "sk-wrong"}
        ) as refused:
            assert refused.status == 401
            assert (await refused.json())["error"]["type"] == "authentication_error"
        headers = {"x-api-key": server.api_key}
        async with http.post(
            f"{server.url}/v1/messages", json={**body, "max_tokens": 0}, headers=headers
        ) as bad:
            assert bad.status == 400
            error = await bad.json()
            assert error["type"] == "error"
            assert error["error"]["type"] == "invalid_request_error"
            assert "max_tokens" in error["error"]["message"]
        async with http.post(
            f"{server.url}/v1/messages", data=b"{not json", headers=headers
        ) as broken:
            assert broken.status == 400
            assert (await broken.json())["error"]["type"] == "invalid_request_error"


async def test_unknown_model_raises_the_sdks_not_found_error(
    sdk: anthropic.AsyncAnthropic,
) -> None:
    with pytest.raises(anthropic.NotFoundError) as missing:
        await sdk.messages.create(model="no-such-model", max_tokens=10, messages=QUESTION)
    assert missing.value.body is not None
    with pytest.raises(anthropic.NotFoundError):
        await sdk.messages.count_tokens(model="no-such-model", messages=QUESTION)


@pytest.mark.parametrize(
    ("messages", "word"),
    [
        ([{"role": "robot", "content": "hi"}], "messages.0"),
        ([{"role": "user", "content": [{"type": "document"}]}], "messages.0.content.0"),
        ([], "messages"),
        ([{"role": "user", "content": [{"type": "text", "text": 5}]}], "messages.0.content.0.text"),
        ([{"role": "user", "content": []}], "messages.0.content"),
        (
            [{"role": "user", "content": ""}, {"role": "assistant", "content": "x"}],
            "messages.0.content",
        ),
    ],
)
async def test_malformed_messages_get_a_clear_400(
    sdk: anthropic.AsyncAnthropic, messages: Any, word: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        await sdk.messages.create(model="gpt-test", max_tokens=10, messages=messages)
    assert f"{word}:" in str(bad.value)


@pytest.mark.parametrize(
    ("field", "value"),
    [("stream", "yes"), ("temperature", 1.5), ("top_p", -0.1), ("temperature", "hot")],
)
async def test_fields_out_of_anthropics_ranges_get_a_400_naming_them(
    sdk: anthropic.AsyncAnthropic, field: str, value: Any
) -> None:
    """`stream: "yes"` was answered unstreamed; temperature 1.5 was relayed (Anthropic's API
    takes 0 to 1)."""
    with pytest.raises(anthropic.BadRequestError) as bad:
        await sdk.messages.create(
            model="gpt-test", max_tokens=10, messages=QUESTION, extra_body={field: value}
        )
    assert f"{field}:" in str(bad.value)


async def test_a_stream_broken_midway_ends_with_an_error_event(
    sdk: anthropic.AsyncAnthropic, upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(Behaviour(faults=(Fault(kind="stream_cut", after_chunks=3),)))
    seen: list[str] = []

    async def follow() -> None:
        async with sdk.messages.stream(
            model="gpt-test", max_tokens=100, messages=QUESTION
        ) as stream:
            async for event in stream:
                seen.append(event.type)

    with pytest.raises(anthropic.APIStatusError):
        await follow()
    assert seen[0] == "message_start"
    assert "message_stop" not in seen


async def test_an_anthropic_deployment_gets_the_body_itself_and_fields_chat_loses_survive(
    sdk: anthropic.AsyncAnthropic, upstream: FakeUpstream
) -> None:
    system: Any = [
        {"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}
    ]
    for model, path in UPSTREAM_PATH.items():
        raw = await sdk.messages.with_raw_response.create(
            model=model,
            max_tokens=50,
            system=system,
            messages=QUESTION,
            extra_body={"top_k": 5},  # Anthropic's; this SDK version has no argument for it
        )
        message = await raw.parse()
        assert message.model == model
        assert message.content[0].type == "text"
        sent = upstream.last_request(path)
        assert sent is not None
        if model == "claude-test":  # passthrough: the body as the client wrote it
            assert sent.body["top_k"] == 5
            *blocks, canary = sent.body["system"]
            assert blocks == system  # cache_control survives; the guard's canary comes after
            assert without_canary(canary["text"]) == ""
            assert sent.body["model"] == "fake-claude"
            assert "propylon" not in sent.body
        else:  # translated: chat has no top_k
            assert "top_k" not in sent.body
        assert raw.headers["x-propylon-guard"].startswith("pass")
        assert message.usage.input_tokens > 0
