"""The fake speaks OpenAI well enough for the official SDK to parse every answer."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Any

import openai
import orjson
import pytest
from openai.types.chat import (
    ChatCompletionMessageFunctionToolCall,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from propylon.testing import FakeUpstream

COMPLETION_TOKENS = 8  # as the `upstream` fixture sets
QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "What is the capital of France?"},
]
WEATHER_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "days": {"type": "integer"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}


@pytest.fixture
async def client(upstream: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=upstream.base_url + "/v1", api_key="sk-test", max_retries=0
    ) as sdk:
        yield sdk


async def test_chat_completion_echoes_the_last_user_message(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(model="fake-gpt", messages=QUESTION)

    choice = completion.choices[0]
    assert choice.message.content is not None
    assert choice.message.content.startswith("Echo: What is the capital of France?")
    assert choice.finish_reason == "stop"
    assert completion.model == "fake-gpt"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == COMPLETION_TOKENS
    assert completion.usage.prompt_tokens == 8
    assert completion.usage.total_tokens == 8 + COMPLETION_TOKENS


async def test_chat_completion_is_deterministic(client: openai.AsyncOpenAI) -> None:
    first = await client.chat.completions.create(model="fake-gpt", messages=QUESTION)
    second = await client.chat.completions.create(model="fake-gpt", messages=QUESTION)

    assert first.choices[0].message.content == second.choices[0].message.content
    assert first.id != second.id


async def test_max_completion_tokens_cuts_the_answer_with_finish_length(
    client: openai.AsyncOpenAI,
) -> None:
    completion = await client.chat.completions.create(
        model="fake-gpt", messages=QUESTION, max_completion_tokens=3
    )

    assert completion.choices[0].message.content == "Echo: What is"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3


async def test_stream_with_include_usage_ends_with_a_usage_chunk(
    client: openai.AsyncOpenAI,
) -> None:
    whole = await client.chat.completions.create(model="fake-gpt", messages=QUESTION)
    stream = await client.chat.completions.create(
        model="fake-gpt",
        messages=QUESTION,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == COMPLETION_TOKENS
    assert all(c.usage is None for c in chunks[:-1])


async def test_forced_function_answers_with_a_tool_call(client: openai.AsyncOpenAI) -> None:
    completion = await client.chat.completions.create(
        model="fake-gpt",
        messages=QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
    )

    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function"
    assert call.function.name == "get_weather"
    arguments = orjson.loads(call.function.arguments)
    assert isinstance(arguments["city"], str)
    assert isinstance(arguments["days"], int)
    assert arguments["unit"] == "celsius"


async def test_streamed_tool_call_deltas_assemble_the_same_arguments(
    client: openai.AsyncOpenAI,
) -> None:
    whole = await client.chat.completions.create(
        model="fake-gpt", messages=QUESTION, tools=[WEATHER_TOOL], tool_choice="required"
    )
    stream = await client.chat.completions.create(
        model="fake-gpt",
        messages=QUESTION,
        tools=[WEATHER_TOOL],
        tool_choice="required",
        stream=True,
    )
    names: list[str] = []
    arguments = ""
    finish: list[Any] = []
    async for chunk in stream:
        finish.append(chunk.choices[0].finish_reason)
        for delta in chunk.choices[0].delta.tool_calls or []:
            assert delta.index == 0
            if delta.function is not None:
                names.append(delta.function.name or "")
                arguments += delta.function.arguments or ""

    assert whole.choices[0].message.tool_calls is not None
    whole_call = whole.choices[0].message.tool_calls[0]
    assert isinstance(whole_call, ChatCompletionMessageFunctionToolCall)
    assert arguments == whole_call.function.arguments
    assert names[0] == "get_weather"
    assert finish[-1] == "tool_calls"


async def test_unknown_forced_function_is_rejected(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        await client.chat.completions.create(
            model="fake-gpt",
            messages=QUESTION,
            tools=[WEATHER_TOOL],
            tool_choice={"type": "function", "function": {"name": "nope"}},
        )
    assert raised.value.param == "tool_choice"


async def test_base64_embeddings_decode_to_the_float_ones(client: openai.AsyncOpenAI) -> None:
    texts = ["the cat sat", "on the mat"]
    floats = await client.embeddings.create(
        model="fake-embedding", input=texts, encoding_format="float"
    )
    decoded = await client.embeddings.create(model="fake-embedding", input=texts)

    assert [d.embedding for d in decoded.data] == [d.embedding for d in floats.data]
    assert [d.index for d in floats.data] == [0, 1]
    assert len(floats.data[0].embedding) == 384
    assert math.isclose(math.fsum(x * x for x in floats.data[0].embedding), 1.0, rel_tol=1e-5)
    assert floats.usage.prompt_tokens == 6


async def test_embedding_dimensions_follow_the_request(client: openai.AsyncOpenAI) -> None:
    result = await client.embeddings.create(model="fake-embedding", input="hi", dimensions=64)

    assert len(result.data[0].embedding) == 64


async def test_models_are_listed(client: openai.AsyncOpenAI) -> None:
    models = [model.id async for model in client.models.list()]

    assert "fake-gpt" in models
