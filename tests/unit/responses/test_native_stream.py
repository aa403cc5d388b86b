"""A Responses upstream's event stream read for a passthrough: one chat chunk per event,
carrying the event, with the text, tool calls, reasoning and usage the layers read."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from propylon.errors import UpstreamStreamInterrupted
from propylon.gateway.protocol import JSONObject, native_answer
from propylon.gateway.usage import chunk_texts
from propylon.responses.native_stream import native_chunks

RESPONSE = {"id": "resp_1", "object": "response", "model": "up", "status": "in_progress"}
USAGE = {
    "input_tokens": 5,
    "input_tokens_details": {"cached_tokens": 1},
    "output_tokens": 9,
    "output_tokens_details": {"reasoning_tokens": 4},
    "total_tokens": 14,
}
CALL = {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "w", "arguments": ""}
EVENTS: list[JSONObject] = [
    {"type": "response.created", "response": RESPONSE},
    {"type": "response.reasoning_summary_text.delta", "item_id": "rs_1", "delta": "Think."},
    {"type": "response.output_text.delta", "item_id": "msg_1", "delta": "Hi"},
    {"type": "response.output_item.added", "output_index": 2, "item": CALL},
    {"type": "response.function_call_arguments.delta", "item_id": "fc_1", "delta": "{}"},
    {"type": "response.completed", "response": {**RESPONSE, "usage": USAGE}},
]


async def sse(*events: JSONObject, ending: bytes = b"") -> AsyncIterator[bytes]:
    for event in events:
        yield b"event: " + str(event["type"]).encode()
        yield b"data: " + orjson.dumps(event)
        yield b""
    if ending:
        yield ending


async def read(lines: AsyncIterator[bytes]) -> list[JSONObject]:
    return [chunk async for chunk in native_chunks(lines, "openai/up")]


async def test_every_event_rides_on_one_chunk_that_says_what_it_means() -> None:
    chunks = await read(sse(*EVENTS))
    assert [native_answer(c) for c in chunks] == EVENTS
    texts = [text for chunk in chunks for text in chunk_texts(chunk)]
    assert texts == ["", "Think.", "Hi", "w", "", "{}"]
    call = chunks[3]["choices"][0]["delta"]["tool_calls"][0]
    assert (call["index"], call["id"]) == (0, "call_1")
    last = chunks[-1]
    assert last["choices"][0]["finish_reason"] == "tool_calls"
    assert last["usage"]["prompt_tokens"] == 5
    assert last["usage"]["completion_tokens"] == 9
    assert last["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}


async def test_a_completion_without_usage_leaves_it_to_the_estimate() -> None:
    chunks = await read(sse(EVENTS[0], {"type": "response.completed", "response": RESPONSE}))
    assert "usage" not in chunks[-1]


@pytest.mark.parametrize(
    "broken",
    [
        {"type": "response.failed", "response": {**RESPONSE, "error": {"message": "boom"}}},
        {"type": "error", "message": "boom"},
    ],
)
async def test_a_failed_stream_is_interrupted(broken: JSONObject) -> None:
    with pytest.raises(UpstreamStreamInterrupted, match="boom"):
        await read(sse(EVENTS[0], broken))


async def test_a_stream_ending_early_is_interrupted() -> None:
    with pytest.raises(UpstreamStreamInterrupted, match="before it finished"):
        await read(sse(*EVENTS[:3]))
