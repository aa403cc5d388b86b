"""`GET /v1/logs/{id}` shows one request in full; `POST /v1/feedback` annotates it."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from propylon.testing import FakeUpstream
from tests.integration.observe.support import ADMIN, Reply, call, chat, records, serve
from tests.support.servers import AppServer, native_gpt
from tests.support.waiting import eventually

TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


@pytest.fixture
async def server(database_url: str, upstream: FakeUpstream) -> AsyncIterator[AppServer]:
    async with serve(database_url, upstream) as running:
        yield running


async def reader_key(server: AppServer, tenant: str = "test") -> str:
    key, _ = await server.app.state.services.access.create_key(
        tenant, features=["chat", "logs:read"]
    )
    return str(key)


async def detail(server: AppServer, log_id: str, key: str | None = ADMIN) -> dict[str, Any]:
    async def found() -> dict[str, Any] | None:
        reply = await call(server, "GET", f"/v1/logs/{log_id}", key=key)
        if reply.status == 404:
            return None  # not written yet
        assert reply.status == 200, reply.body
        body: dict[str, Any] = reply.body
        return body

    return await eventually(found, f"the record of {log_id}")


async def test_the_detail_shows_messages_answer_route_overhead_and_headers(
    server: AppServer,
) -> None:
    reply = await chat(server, "what is the weather in Oslo?", metadata={"prompt_name": "w"})
    assert reply.status == 200
    request_id = reply.headers["x-request-id"]

    shown = await detail(server, request_id, key=await reader_key(server))
    assert shown["object"] == "request_log.detail" and shown["request_id"] == request_id
    assert shown["messages"] == [{"role": "user", "content": "what is the weather in Oslo?"}]
    assert shown["answer"] == reply.body["choices"][0]["message"]["content"]
    assert shown["response_id"] == reply.body["id"]
    assert [a["outcome"] for a in shown["attempts"]] == ["ok"]
    overhead = shown["overhead"]
    assert overhead["latency_ms"] >= overhead["upstream_ms"] > 0
    assert len(overhead["attempts_ms"]) == 1
    assert shown["headers"]["x-propylon-deployment"] == reply.headers["x-propylon-deployment"]
    assert shown["headers"]["x-propylon-guard"] == reply.headers["x-propylon-guard"]
    assert shown["metadata"] == {"prompt_name": "w"}
    assert shown["feedback"] == [] and shown["feedback_score"] is None

    by_row = await detail(server, str(shown["id"]))
    assert by_row["request_id"] == request_id


async def test_tool_calls_are_listed_in_the_detail(server: AppServer) -> None:
    reply = await chat(server, "weather in Oslo", tools=[TOOL], tool_choice="required")
    assert reply.status == 200, reply.body

    shown = await detail(server, reply.headers["x-request-id"])
    (tool_call,) = shown["tool_calls"]
    assert tool_call["function"]["name"] == "lookup_weather"


async def test_a_key_without_logs_read_sees_the_detail_without_content(
    server: AppServer,
) -> None:
    reply = await chat(server, "a private question")
    shown = await detail(server, reply.headers["x-request-id"], key=server.api_key)
    assert shown["content_withheld"] is True
    assert shown["messages"] is None and shown["answer"] is None and shown["prompt"] is None
    assert shown["latency_ms"] > 0


async def test_another_tenants_request_is_not_found(server: AppServer) -> None:
    reply = await chat(server, "mine")
    request_id = reply.headers["x-request-id"]
    await detail(server, request_id)  # written
    other = await reader_key(server, tenant="other")

    refused = await call(server, "GET", f"/v1/logs/{request_id}", key=other)
    assert refused.status == 404 and refused.body["error"]["code"] == "not_found"
    feedback = await call(
        server,
        "POST",
        "/v1/feedback",
        key=other,
        json={"request_id": request_id, "score": "up"},
    )
    assert feedback.status == 404, feedback.body


async def test_feedback_right_after_the_answer_is_stored_and_shown(server: AppServer) -> None:
    """Posted at once, by the answer's id: the record may still be in the log's buffer."""
    reply = await chat(server, "rate me", metadata={"prompt_name": "p", "prompt_version": "v1"})
    posted = await call(
        server,
        "POST",
        "/v1/feedback",
        json={
            "response_id": reply.body["id"],
            "score": "down",
            "comment": "too short",
            "metadata": {"reviewer": "ana"},
        },
    )
    assert posted.status == 201, posted.body
    request_id = reply.headers["x-request-id"]
    assert posted.body["request_id"] == request_id
    assert (posted.body["score"], posted.body["kind"]) == (0.0, "thumbs")
    numeric = await call(
        server, "POST", "/v1/feedback", json={"request_id": request_id, "score": 0.5}
    )
    assert numeric.status == 201 and numeric.body["kind"] == "number"

    shown = await detail(server, request_id)
    assert [(f["score"], f["comment"]) for f in shown["feedback"]] == [
        (0.0, "too short"),
        (0.5, None),
    ]
    assert shown["feedback"][0]["metadata"] == {"reviewer": "ana"}
    assert shown["feedback_score"] == pytest.approx(0.25)
    (listed,) = await records(server, 1, f"request_id={request_id}")
    assert listed["feedback_score"] == pytest.approx(0.25)


def shown_id(reply: Reply) -> str:
    """The answer's id as the client saw it: the body's, or a stream's first event's."""
    if isinstance(reply.body, dict):
        return str(reply.body["id"])
    for line in reply.body.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            event = orjson.loads(line[6:])
            carried = event.get("response") or event.get("message")
            if isinstance(carried, dict) and "id" in carried:
                return str(carried["id"])
    raise AssertionError(f"no id in the stream: {reply.body[:300]}")


SAY = {"messages": [{"role": "user", "content": "rate this"}], "max_tokens": 16}
ANSWERED_IN = [  # (path, model, body): translated to chat, and passed through as it is
    ("/v1/responses", "gpt-test", {"input": "rate this"}),
    ("/v1/responses", "native-gpt", {"input": "rate this"}),
    ("/v1/messages", "gpt-test", SAY),
    ("/v1/messages", "native-claude", SAY),
]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(("path", "model", "body"), ANSWERED_IN)
async def test_feedback_names_a_response_or_message_by_the_id_its_client_was_shown(
    database_url: str,
    upstream: FakeUpstream,
    path: str,
    model: str,
    body: dict[str, Any],
    stream: bool,
) -> None:
    """`/v1/responses` and `/v1/messages` show their own ids (`resp_…`, `msg_…`), whether
    the deployment was spoken to in chat or in the client's API: the log keeps that id."""
    native = [
        native_gpt(upstream.base_url),
        {
            "name": "native-claude",
            "deployments": [
                {"provider": "anthropic", "base_url": upstream.base_url, "model": "fake-claude"}
            ],
        },
    ]
    async with serve(database_url, upstream, more_models=native) as server:
        reply = await call(server, "POST", path, json={**body, "model": model, "stream": stream})
        assert reply.status == 200, reply.body
        answer_id = shown_id(reply)
        assert answer_id.startswith("resp_" if path == "/v1/responses" else "msg_"), answer_id
        posted = await call(
            server, "POST", "/v1/feedback", json={"response_id": answer_id, "score": "up"}
        )
        assert posted.status == 201, posted.body
        assert posted.body["request_id"] == reply.headers["x-request-id"]
        shown = await detail(server, reply.headers["x-request-id"])
        assert shown["response_id"] == answer_id


MALFORMED = [
    ({"score": 1}, "request_id"),
    ({"request_id": "a", "response_id": "b", "score": 1}, "request_id"),
    ({"request_id": "a"}, "score"),
    ({"request_id": "a", "score": "sideways"}, "score"),
    ({"request_id": "a", "score": 1e300}, "score"),
    ({"request_id": "a", "score": 1, "comment": 5}, "comment"),
    ({"request_id": "a", "score": 1, "metadata": [1]}, "metadata"),
    ({"request_id": "a", "score": 1, "rating": 1}, "rating"),
    ({"request_id": "", "score": 1}, "request_id"),
]


async def test_malformed_feedback_is_refused_naming_the_field(server: AppServer) -> None:
    for body, param in MALFORMED:
        reply = await call(server, "POST", "/v1/feedback", json=body)
        assert reply.status == 400, (body, reply.body)
        assert reply.body["error"]["param"] == param, body


async def test_feedback_on_an_unknown_request_or_without_a_key_is_refused(
    server: AppServer,
) -> None:
    unknown = await call(
        server, "POST", "/v1/feedback", json={"request_id": "req_nope", "score": "up"}
    )
    assert unknown.status == 404 and unknown.body["error"]["param"] == "request_id"
    anonymous = await call(
        server, "POST", "/v1/feedback", key=None, json={"request_id": "x", "score": 1}
    )
    assert anonymous.status == 401
    not_json = await call(server, "POST", "/v1/feedback", data=b"{nope")
    assert not_json.status == 400


async def test_the_list_filters_by_guard_key_and_free_text(server: AppServer) -> None:
    reader = await reader_key(server)
    first = await chat(server, "tell me about aardvarks")
    await chat(server, "tell me about zebras")
    await records(server, 2, "origin=user")

    found = await call(server, "GET", "/v1/logs?q=aardvarks", key=reader)
    assert found.status == 200, found.body
    assert [r["request_id"] for r in found.body["data"]] == [first.headers["x-request-id"]]
    passed = await records(server, 2, "guard=pass")
    assert {r["guard"]["action"] for r in passed} == {"pass"}
    (listed, *_) = await records(server, 2, "origin=user")
    by_key = await records(server, 2, f"key_prefix={listed['key_prefix']}")
    assert all(r["key_prefix"] == listed["key_prefix"] for r in by_key)

    withheld = await call(server, "GET", "/v1/logs?q=aardvarks", key=server.api_key)
    assert withheld.status == 403 and withheld.body["error"]["param"] == "q"
    bad = await call(server, "GET", "/v1/logs?guard=maybe", key=reader)
    assert bad.status == 400 and bad.body["error"]["param"] == "guard"


async def test_the_filtered_log_exports_as_jsonl_and_csv(server: AppServer) -> None:
    reader = await reader_key(server)
    for content in ("export me, pelican", "export me too", "not this one"):
        await chat(server, content, metadata={"batch": "x" if "export" in content else "y"})
    await records(server, 3, "origin=user")

    jsonl = await call(
        server, "GET", "/v1/logs/export?format=jsonl&metadata.batch=x&origin=user", key=reader
    )
    assert jsonl.status == 200, jsonl.body
    assert jsonl.headers["content-type"].startswith("application/x-ndjson")
    lines = [orjson.loads(line) for line in jsonl.body.splitlines()]
    assert len(lines) == 2 and all(r["metadata"] == {"batch": "x"} for r in lines)
    assert "pelican" in lines[1]["prompt"], "content comes to logs:read keys"

    csv_reply = await call(server, "GET", "/v1/logs/export?format=csv&q=pelican", key=reader)
    assert csv_reply.status == 200
    table = list(csv.DictReader(io.StringIO(csv_reply.body)))
    assert len(table) == 1 and "pelican" in table[0]["prompt"]
    assert orjson.loads(table[0]["metadata"]) == {"batch": "x"}

    bad = await call(server, "GET", "/v1/logs/export?format=xml", key=reader)
    assert bad.status == 400 and bad.body["error"]["param"] == "format"
    withheld = await call(server, "GET", "/v1/logs/export?q=pelican", key=server.api_key)
    assert withheld.status == 403


async def test_a_csv_cell_a_spreadsheet_would_run_as_a_formula_is_exported_as_text(
    server: AppServer,
) -> None:
    """Any client chooses what the log keeps of a refused model's name: in a spreadsheet,
    `=HYPERLINK(…)` would run."""
    reader = await reader_key(server)
    formulas = ['=HYPERLINK("http://evil.example","click")', "+1+1", "-2+3", "@SUM(A1)"]
    for model in formulas:
        reply = await call(
            server,
            "POST",
            "/v1/chat/completions",
            json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        )
        assert reply.status == 404, reply.body
    await records(server, len(formulas), "status=404")
    exported = await call(server, "GET", "/v1/logs/export?format=csv&status=404", key=reader)
    table = list(csv.DictReader(io.StringIO(exported.body)))
    assert sorted(row["requested_model"] for row in table) == sorted("'" + f for f in formulas)
