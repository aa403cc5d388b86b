"""The official openai SDK, pointed at Propylon, talking to an Anthropic upstream."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam
from openai.types.shared_params import ResponseFormatJSONSchema

from propylon.testing import Behaviour, FakeUpstream
from tests.support.canary import without_canary
from tests.support.servers import serve_app

MESSAGES: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "What is the weather in Paris?"},
]
TOOLS: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture
async def claude(
    database_url: str, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[openai.AsyncOpenAI]:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test")
    upstream.set_behaviour(Behaviour(require_api_key="sk-ant-test"))
    models = [
        {
            "name": "claude-test",
            "deployments": [
                {
                    "provider": "anthropic",
                    "base_url": upstream.base_url,
                    "model": "fake-claude",
                    "api_key_env": "TEST_ANTHROPIC_KEY",
                }
            ],
        }
    ]
    async with (
        serve_app(database_url=database_url, models=models) as server,
        openai.AsyncOpenAI(base_url=server.v1, api_key=server.api_key, max_retries=0) as sdk,
    ):
        yield sdk


async def test_anthropic_round_trip_without_streaming(
    claude: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    reply = await claude.chat.completions.create(model="claude-test", messages=MESSAGES)
    assert reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage is not None
    assert reply.usage.prompt_tokens > 0
    sent = upstream.last_request("/v1/messages")
    assert sent is not None
    assert without_canary(sent.body["system"]) == "You are terse."
    assert sent.body["model"] == "fake-claude"


async def test_anthropic_round_trip_streaming_with_usage(claude: openai.AsyncOpenAI) -> None:
    stream = await claude.chat.completions.create(
        model="claude-test",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    async for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    assert text
    assert finish == "stop"
    assert usage is not None
    assert usage.completion_tokens > 0


async def test_anthropic_tool_call_comes_back_as_openai_tool_calls(
    claude: openai.AsyncOpenAI,
) -> None:
    reply = await claude.chat.completions.create(
        model="claude-test",
        messages=MESSAGES,
        tools=TOOLS,
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )
    calls = reply.choices[0].message.tool_calls
    assert reply.choices[0].finish_reason == "tool_calls"
    assert calls is not None
    call = calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert "city" in json.loads(call.function.arguments)


REPORT_FORMAT: ResponseFormatJSONSchema = {
    "type": "json_schema",
    "json_schema": {
        "name": "weather_report",
        "schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "celsius": {"type": "number"}},
            "required": ["city", "celsius"],
        },
    },
}


async def test_a_json_schema_response_format_is_answered_through_a_forced_tool(
    claude: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    reply = await claude.chat.completions.create(
        model="claude-test",
        messages=MESSAGES,
        response_format=REPORT_FORMAT,
    )
    message = reply.choices[0].message
    answer = json.loads(message.content or "")
    assert set(answer) == {"city", "celsius"} and isinstance(answer["celsius"], int | float)
    assert message.tool_calls is None
    assert reply.choices[0].finish_reason == "stop"
    sent = upstream.last_request("/v1/messages")
    assert sent is not None
    assert [tool["name"] for tool in sent.body["tools"]] == ["weather_report"]
    assert sent.body["tool_choice"] == {"type": "tool", "name": "weather_report"}

    stream = await claude.chat.completions.create(
        model="claude-test",
        messages=MESSAGES,
        response_format=REPORT_FORMAT,
        stream=True,
    )
    chunks = [chunk async for chunk in stream if chunk.choices]
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert set(json.loads(streamed)) == {"city", "celsius"}
    assert not any(c.choices[0].delta.tool_calls for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"logprobs": True}, "logprobs"),
        ({"seed": 7}, "seed"),
        ({"presence_penalty": 0.5}, "presence_penalty"),
        ({"response_format": REPORT_FORMAT, "tools": TOOLS}, "response_format"),
        ({"response_format": {"type": "yaml"}}, "response_format"),
        ({"tool_choice": "bogus"}, "tool_choice"),  # refused with or without tools
        ({"stop": 5}, "stop"),
    ],
)
async def test_what_anthropic_cannot_do_is_a_400_naming_the_parameter(
    claude: openai.AsyncOpenAI, upstream: FakeUpstream, extra: dict[str, object], param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await claude.chat.completions.create(
            model="claude-test",
            messages=MESSAGES,
            extra_body=extra,
        )
    assert caught.value.param == param
    assert f"`{param}`" in caught.value.message
    assert upstream.calls.get("/v1/messages", 0) == 0  # refused before any call
