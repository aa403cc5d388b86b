"""Every /v1 request leaves one record in the request log, readable through /v1/logs."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from propylon.testing import Behaviour, FakeUpstream, Fault
from tests.integration.observe.support import ADMIN, Reply, call, chat, records, serve
from tests.support.servers import AppServer


@pytest.fixture
async def server(database_url: str, upstream: FakeUpstream) -> AsyncIterator[AppServer]:
    async with serve(database_url, upstream) as running:
        yield running


async def test_a_chat_request_is_recorded_with_its_route_usage_cost_and_metadata(
    server: AppServer,
) -> None:
    reply = await chat(
        server,
        "hello there",
        metadata={"prompt_name": "greeting", "prompt_version": "v2", "user": "u-1"},
    )
    assert reply.status == 200

    (record,) = await records(server, 1, f"request_id={reply.headers['x-request-id']}")
    usage = reply.body["usage"]
    assert record["status"] == 200 and record["error_type"] is None
    assert record["endpoint"] == "chat" and record["stream"] is False
    assert (
        record["tenant_id"]
        and record["key_prefix"]
        and server.api_key.startswith(record["key_prefix"])
    )
    assert record["requested_model"] == "gpt-test"
    assert record["deployment"] == reply.headers["x-propylon-deployment"]
    assert record["attempt_count"] == 1
    assert [a["outcome"] for a in record["attempts"]] == ["ok"]
    assert record["prompt_tokens"] == usage["prompt_tokens"]
    assert record["completion_tokens"] == usage["completion_tokens"]
    expected_cost = (usage["prompt_tokens"] * 2.0 + usage["completion_tokens"] * 8.0) / 1e6
    assert record["cost_usd"] == pytest.approx(expected_cost)
    assert record["latency_ms"] > 0
    assert 0 <= record["overhead_ms"] <= record["latency_ms"]
    assert record["upstream_ms"] > 0
    assert record["metadata"] == {"prompt_name": "greeting", "prompt_version": "v2", "user": "u-1"}
    assert record["content_policy"] == "full"
    assert reply.body["choices"][0]["message"]["content"] == record["response"]
    assert orjson.loads(record["prompt"]) == [{"role": "user", "content": "hello there"}]


async def test_secrets_are_redacted_and_guard_verdicts_kept(server: AppServer) -> None:
    reply = await chat(server, "hello, my key is sk-abcdefghijklmnopqrstuvwxyz123456")

    (record,) = await records(server, 1, f"request_id={reply.headers['x-request-id']}")
    assert record["status"] == reply.status
    assert "hello, my key is [REDACTED]" in record["prompt"], "secrets never reach the log"
    assert "sk-abcdef" not in record["prompt"] + (record["response"] or "")
    assert record["guard"], "the guard's verdicts are part of the record"


async def test_a_streamed_request_is_recorded_when_its_stream_ends(server: AppServer) -> None:
    body = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "stream please"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    reply = await call(server, "POST", "/v1/chat/completions", json=body)
    assert reply.status == 200
    events = [
        orjson.loads(line.removeprefix("data: "))
        for line in reply.body.split("\n\n")
        if line.startswith("data: {")
    ]
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e["choices"])
    usage = next(e["usage"] for e in events if e.get("usage"))

    (record,) = await records(server, 1, f"request_id={reply.headers['x-request-id']}")
    assert record["stream"] is True
    assert record["response"] == text
    assert record["completion_tokens"] == usage["completion_tokens"]
    assert record["ttft_ms"] is not None and 0 < record["ttft_ms"] <= record["latency_ms"]
    assert 0 <= record["overhead_ms"] <= record["latency_ms"]


async def test_a_client_leaving_mid_stream_is_recorded_and_the_upstream_released(
    server: AppServer, upstream: FakeUpstream
) -> None:
    """The upstream would stream for 40 s; the client reads one event and leaves. The record
    (status 200, ``client_disconnected``) comes long before the upstream would have ended."""
    upstream.set_behaviour(Behaviour(completion_tokens=400, tokens_per_second=10))
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "a long story"}]}
    headers = {"Authorization": f"Bearer {server.api_key}"}
    started = time.monotonic()
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.url}/v1/chat/completions", json={**body, "stream": True}, headers=headers
        ) as resp,
    ):
        assert resp.status == 200
        request_id = resp.headers["x-request-id"]
        first = await resp.content.readline()
        assert first.startswith(b"data: {")
    # Leaving the block closed the connection mid-stream.
    (record,) = await records(server, 1, f"request_id={request_id}")
    assert record["stream"] is True
    assert (record["status"], record["error_code"]) == (200, "client_disconnected")
    # Half the stream's length: only a stream left running to its end could take that long.
    assert time.monotonic() - started < 20.0, "the stream was not stopped when the client left"


@pytest.mark.parametrize(
    "route",
    [
        "chat",  # answered in front of FastAPI (``hot_routes.py``)
        "messages",  # through FastAPI's stack
        "rag",  # an answer over a collection: retrieval, then the model
    ],
)
async def test_a_client_leaving_before_its_answer_is_recorded_and_the_call_stopped(
    server: AppServer, upstream: FakeUpstream, route: str
) -> None:
    """The upstream holds the request; the client gives up waiting. The gateway stops the
    call (its record, 499 ``client_disconnected`` with no answer, is written while the
    upstream still holds it) and serves the next request as usual."""
    messages = [{"role": "user", "content": "a slow answer"}]
    path, body = {
        "chat": ("/v1/chat/completions", {"model": "gpt-test", "messages": messages}),
        "messages": ("/v1/messages", {"model": "gpt-test", "messages": messages, "max_tokens": 64}),
        "rag": ("", {"model": "gpt-test", "question": "a slow answer", "mode": "keyword"}),
    }[route]
    if route == "rag":  # an empty collection: the model answers without sources
        name = f"left-{time.time_ns()}"
        made = await call(
            server, "POST", "/v1/collections", json={"name": name, "embedding_model": "embed-test"}
        )
        assert made.status == 201, made.body
        path = f"/v1/collections/{made.body['id']}/answer"
    upstream.hold()
    request_id = f"left-before-answer-{time.time_ns()}"
    headers = {"Authorization": f"Bearer {server.api_key}", "x-request-id": request_id}
    async with aiohttp.ClientSession() as http:
        sent = asyncio.ensure_future(http.post(f"{server.url}{path}", json=body, headers=headers))
        await asyncio.wait_for(upstream.wait_held(1), 30)
        sent.cancel()  # the client hangs up
        with contextlib.suppress(asyncio.CancelledError):
            await sent
    (record,) = await records(server, 1, f"request_id={request_id}")
    assert (record["status"], record["error_code"]) == (499, "client_disconnected")
    assert record["stream"] is False and record["response"] is None
    assert [a["outcome"] for a in record["attempts"]] == ["cancelled"], "it was in flight"
    upstream.release()
    assert (await chat(server, "and now a quick one")).status == 200


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
async def test_a_client_leaving_while_sending_its_body_is_recorded_as_499(
    server: AppServer, path: str
) -> None:
    """It announces 100 bytes, sends 10 and hangs up: recorded 499, not a 500 (an error)."""
    request_id = f"left-mid-body-{time.time_ns()}"
    host, port = server.url.removeprefix("http://").split(":")
    _, writer = await asyncio.open_connection(host, int(port))
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {server.api_key}\r\nx-request-id: {request_id}\r\n"
        'Content-Length: 100\r\n\r\n{"model": '.encode()
    )
    await writer.drain()
    writer.close()
    await writer.wait_closed()
    (record,) = await records(server, 1, f"request_id={request_id}")
    assert (record["status"], record["error_code"]) == (499, "client_disconnected")


async def test_embeddings_are_recorded_without_their_vectors(server: AppServer) -> None:
    reply = await call(
        server, "POST", "/v1/embeddings", json={"model": "embed-test", "input": ["a", "b"]}
    )
    assert reply.status == 200
    (record,) = await records(server, 1, f"request_id={reply.headers['x-request-id']}")
    assert record["endpoint"] == "embeddings"
    assert record["prompt_tokens"] == reply.body["usage"]["prompt_tokens"]
    assert record["response"] is None
    assert orjson.loads(record["prompt"]) == ["a", "b"]


async def test_a_failed_upstream_call_is_recorded_with_its_error_and_attempts(
    server: AppServer, upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(Behaviour(faults=(Fault(kind="status", status=500),)))
    reply = await chat(server)
    assert reply.status == 502
    assert reply.body["error"]["type"] == "upstream_error"

    (record,) = await records(server, 1, f"request_id={reply.headers['x-request-id']}")
    assert record["status"] == 502
    code = reply.body["error"]["code"]
    assert (record["error_type"], record["error_code"]) == ("upstream_error", code)
    assert record["attempt_count"] == 2, "the retry policy's two calls are both recorded"
    assert [a["outcome"] for a in record["attempts"]] == [code, code]


async def test_requests_refused_before_the_gateway_are_recorded_too(server: AppServer) -> None:
    no_key = await chat_without_key(server)
    bad_json = await call(
        server,
        "POST",
        "/v1/chat/completions",
        data=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert (no_key.status, bad_json.status) == (401, 400)

    (unauthenticated,) = await records(server, 1, f"request_id={no_key.headers['x-request-id']}")
    assert unauthenticated["status"] == 401
    assert unauthenticated["error_code"] == no_key.body["error"]["code"]
    assert unauthenticated["error_type"] == no_key.body["error"]["type"]
    assert unauthenticated["tenant_id"] is None
    assert unauthenticated["endpoint"] == "chat"
    (malformed,) = await records(server, 1, f"request_id={bad_json.headers['x-request-id']}")
    assert (malformed["status"], malformed["error_code"]) == (400, "invalid_json")


async def chat_without_key(server: AppServer) -> Reply:
    return await call(
        server,
        "POST",
        "/v1/chat/completions",
        key=None,
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
    )


async def test_request_id_is_accepted_and_returned_and_overhead_is_on_every_response(
    server: AppServer,
) -> None:
    given = await call(
        server,
        "POST",
        "/v1/chat/completions",
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "id"}]},
        headers={"x-request-id": "client-chosen-id-42"},
    )
    assert given.headers["x-request-id"] == "client-chosen-id-42"
    generated = await chat(server)
    assert len(generated.headers["x-request-id"]) == 32
    health = await call(server, "GET", "/healthz", key=None)
    missing = await call(server, "GET", "/v1/no-such-route")
    for reply in (given, generated, health, missing):
        assert float(reply.headers["x-propylon-overhead-ms"]) >= 0

    (record,) = await records(server, 1, "request_id=client-chosen-id-42")
    assert record["request_id"] == "client-chosen-id-42"


async def test_metadata_header_is_recorded_and_a_malformed_one_is_refused(
    server: AppServer,
) -> None:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "labels"}]}
    labelled = await call(
        server,
        "POST",
        "/v1/chat/completions",
        json=body,
        headers={"x-propylon-metadata": '{"prompt_version": "v7", "team": "search"}'},
    )
    assert labelled.status == 200
    (record,) = await records(server, 1, "metadata.prompt_version=v7")
    assert record["metadata"] == {"prompt_version": "v7", "team": "search"}

    malformed = await call(
        server,
        "POST",
        "/v1/chat/completions",
        json=body,
        headers={"x-propylon-metadata": "not json"},
    )
    assert malformed.status == 400
    assert malformed.body["error"]["param"] == "x-propylon-metadata"
    (refused,) = await records(server, 1, f"request_id={malformed.headers['x-request-id']}")
    assert (refused["status"], refused["error_type"]) == (400, "invalid_request_error")


async def test_logs_filter_by_metadata_model_status_and_time(
    server: AppServer, upstream: FakeUpstream
) -> None:
    for version in ("v1", "v1", "v2"):
        assert (await chat(server, metadata={"prompt_version": version})).status == 200
    upstream.set_behaviour(Behaviour(faults=(Fault(kind="status", status=500),)))
    assert (await chat(server, metadata={"prompt_version": "v2"})).status == 502
    upstream.set_behaviour(Behaviour())

    assert len(await records(server, 4)) == 4
    assert len(await records(server, 2, "metadata.prompt_version=v1")) == 2
    assert len(await records(server, 2, 'metadata={"prompt_version": "v2"}')) == 2
    failed = await records(server, 1, "status=error")
    assert [r["status"] for r in failed] == [502]
    assert len(await records(server, 3, "status=200&model=gpt-test")) == 3
    later = await call(server, "GET", "/v1/logs?since=2999-01-01T00:00:00Z", key=ADMIN)
    assert later.body["data"] == []
    paged = await call(server, "GET", "/v1/logs?limit=3", key=ADMIN)
    assert len(paged.body["data"]) == 3 and paged.body["has_more"] is True
    rest = await call(server, "GET", f"/v1/logs?before={paged.body['next_before']}", key=ADMIN)
    assert len(rest.body["data"]) == 1


async def test_bad_log_filters_are_refused_in_openai_shape(server: AppServer) -> None:
    for query, param in (
        ("limit=0", "limit"),
        ("since=yesterday", "since"),
        ("status=teapot", "status"),
        ("metadata=[1]", "metadata"),
        ("cache_status=garbage", "cache_status"),
    ):
        reply = await call(server, "GET", f"/v1/logs?{query}")
        assert reply.status == 400, query
        assert reply.body["error"]["param"] == param
    assert reply.body["error"]["message"] == (
        "`cache_status` must be one of hit-exact, hit-semantic, miss, bypass, verify-agree, "
        "verify-wrong."
    )


async def test_a_tenant_sees_only_its_own_records_and_the_admin_sees_all(
    server: AppServer,
) -> None:
    other_key, _ = await server.app.state.services.access.create_key("other")
    assert (await chat(server)).status == 200
    mine = await call(
        server,
        "POST",
        "/v1/chat/completions",
        key=other_key,
        json={"model": "gpt-test", "messages": [{"role": "user", "content": "other"}]},
    )
    assert mine.status == 200

    assert len(await records(server, 2)) == 2
    seen_by_other = await records(server, 1, key=other_key)
    assert [r["request_id"] for r in seen_by_other] == [mine.headers["x-request-id"]]
    unauthenticated = await call(server, "GET", "/v1/logs", key=None)
    assert unauthenticated.status == 401
    # Asking for another tenant is refused, not ignored (it read as the other's figures); its
    # own tenant's id is what it gets anyway.
    (own,) = await records(server, 1, f"request_id={mine.headers['x-request-id']}")
    assert (
        await call(server, "GET", f"/v1/logs?tenant_id={own['tenant_id']}", key=other_key)
    ).status == 200
    for path in ("/v1/logs", "/v1/logs/export", "/v1/stats", "/v1/stats/prompt-versions"):
        refused = await call(server, "GET", f"{path}?tenant_id={uuid.uuid4()}", key=other_key)
        assert refused.status == 403, (path, refused.body)
        assert refused.body["error"]["param"] == "tenant_id"


async def test_hashed_and_off_policies_keep_no_content(
    database_url: str, upstream: FakeUpstream
) -> None:
    policies = {"content_logging": "off", "tenant_content_logging": {"test": "hashed"}}
    async with serve(database_url, upstream, observe=policies) as server:
        other_key, _ = await server.app.state.services.access.create_key("other")
        assert (await chat(server, "a private question")).status == 200
        await call(
            server,
            "POST",
            "/v1/chat/completions",
            key=other_key,
            json={"model": "gpt-test", "messages": [{"role": "user", "content": "private"}]},
        )
        hashed, off = sorted(await records(server, 2), key=lambda r: r["content_policy"])
    assert hashed["content_policy"] == "hashed"
    assert hashed["prompt"].startswith("sha256:") and len(hashed["prompt"]) == 7 + 64
    assert "private" not in hashed["prompt"] + hashed["response"]
    assert off["content_policy"] == "off"
    assert (off["prompt"], off["response"]) == (None, None)


async def test_an_unexpected_error_off_the_hot_routes_is_a_500_with_its_request_id(
    server: AppServer,
) -> None:
    """FastAPI's error middleware answers inside the request context (``FrontedFastAPI``):
    the 500 is OpenAI-shaped, carries ``x-request-id``, and its record says why."""

    async def boom() -> None:
        raise RuntimeError("kaput")

    server.app.add_api_route("/v1/boom", boom, methods=["POST"])
    reply = await call(server, "POST", "/v1/boom", json={})
    assert reply.status == 500
    assert reply.body["error"]["type"] == "server_error"
    assert "kaput" not in str(reply.body)  # the cause stays in the server's log
    request_id = reply.headers["x-request-id"]
    assert "x-propylon-overhead-ms" in reply.headers
    (record,) = await records(server, 1, f"request_id={request_id}")
    assert record["status"] == 500
    assert (record["error_type"], record["error_code"]) == ("server_error", "internal_error")
