"""The fake speaks OpenAI's Responses API well enough for the official SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import openai
import pytest
from openai.types.responses import FunctionToolParam

from propylon.testing import FakeUpstream

SEARCH: FunctionToolParam = {
    "type": "function",
    "name": "search",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}},
    "strict": False,
}


@pytest.fixture
async def client(upstream: FakeUpstream) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{upstream.base_url}/v1", api_key="sk-test", max_retries=0
    ) as sdk:
        yield sdk


async def test_a_response_echoes_the_input(client: openai.AsyncOpenAI) -> None:
    response = await client.responses.create(model="fake-gpt", input="Name three rivers")
    assert response.status == "completed"
    assert response.output_text.startswith("Echo: Name three rivers")
    assert response.usage is not None
    assert response.usage.input_tokens == 3


async def test_a_streamed_response_sends_the_typed_events(client: openai.AsyncOpenAI) -> None:
    stream = await client.responses.create(model="fake-gpt", input="Name rivers", stream=True)
    events = [event async for event in stream]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.startswith("Echo: Name rivers")


async def test_a_forced_function_tool_answers_with_a_function_call(
    client: openai.AsyncOpenAI,
) -> None:
    response = await client.responses.create(
        model="fake-gpt",
        input="Find rivers",
        tools=[SEARCH],
        tool_choice={"type": "function", "name": "search"},
    )
    call = response.output[0]
    assert call.type == "function_call"
    assert call.name == "search"
    assert isinstance(json.loads(call.arguments), dict)


async def test_previous_response_id_is_refused_by_the_fake(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError):
        await client.responses.create(
            model="fake-gpt", input="Hi", previous_response_id="resp_missing"
        )
