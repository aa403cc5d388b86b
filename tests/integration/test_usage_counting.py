"""Every token counted: a streamed tool-call answer records the same completion tokens as the
same answer not streamed, through OpenAI-compatible and Anthropic deployments, whether or not
the client asked for the usage chunk; without any usage upstream, an estimate, marked so."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from propylon.testing import Behaviour, FakeUpstream
from tests.integration.observe.support import records
from tests.support.servers import AppServer, gpt_and_claude, serve_app

ADMIN = "admin-secret-for-usage-tests"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
                "required": ["city", "days"],
            },
        },
    }
]
FORCED = {"type": "function", "function": {"name": "get_weather"}}


@pytest.fixture
async def server(
    database_url: str, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[AppServer]:
    monkeypatch.setenv("TEST_ANTHROPIC_KEY", "sk-ant-test")
    async with serve_app(
        database_url=database_url,
        models=gpt_and_claude(upstream.base_url),
        admin_key=ADMIN,
        observe={"flush_interval_s": 0.05},
        cache={"enabled": False},
    ) as running:
        yield running


async def ask(server: AppServer, model: str, label: str, **fields: Any) -> list[dict[str, Any]]:
    """One forced tool call; the chunks of a stream (or the one answer), as the client saw."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "What is the weather in Paris this week?"}],
        "tools": TOOLS,
        "tool_choice": FORCED,
        "max_tokens": 200,
        "metadata": {"case": label},
        **fields,
    }
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.v1}/chat/completions", json=body, headers=server.headers) as resp,
    ):
        assert resp.status == 200, await resp.text()
        raw = await resp.read()
    if not fields.get("stream"):
        return [orjson.loads(raw)]
    events = [line[6:] for line in raw.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    return [orjson.loads(e) for e in events[:-1]]


async def record_of(server: AppServer, label: str) -> dict[str, Any]:
    [row] = await records(server, 1, f"metadata.case={label}", key=ADMIN)
    return row


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
async def test_a_streamed_tool_call_records_the_tokens_of_the_same_answer_not_streamed(
    server: AppServer, model: str
) -> None:
    [plain] = await ask(server, model, "plain")
    silent = await ask(server, model, "silent", stream=True)
    told = await ask(server, model, "told", stream=True, stream_options={"include_usage": True})
    expected = plain["usage"]["completion_tokens"]
    assert expected > 0
    assert plain["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
    for label in ("plain", "silent", "told"):
        row = await record_of(server, label)
        assert abs(row["completion_tokens"] - expected) <= 1, (label, row["completion_tokens"])
        assert row["usage_estimated"] is False
    # The usage chunk reaches only the client that asked for it.
    assert not any("usage" in chunk for chunk in silent)
    assert told[-1]["choices"] == []
    assert told[-1]["usage"]["completion_tokens"] == expected


async def test_an_upstream_without_usage_is_estimated_with_the_tokenizer_and_marked(
    server: AppServer, upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(Behaviour(report_usage=False))
    await ask(server, "gpt-test", "plain")
    await ask(server, "gpt-test", "streamed", stream=True)
    plain, streamed = await record_of(server, "plain"), await record_of(server, "streamed")
    for row in (plain, streamed):
        assert row["usage_estimated"] is True
        assert row["prompt_tokens"] > 0
        assert row["completion_tokens"] > 0, "the tool call's arguments are counted"
    assert streamed["completion_tokens"] == plain["completion_tokens"]
