"""`POST /v1/rerank`: routed to rerank deployments (the fake upstream's `/v1/rerank`, or the
built-in `local/minilm-rerank`), with keys, limits, fallback and the request log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from propylon.access.limits import Limits
from propylon.testing import FakeUpstream
from propylon.testing.behaviour import Behaviour, Fault
from tests.integration.observe.support import call, models, records, serve
from tests.support.servers import AppServer

DOCUMENTS = [
    "Paris is the capital and largest city of France.",
    "The mitochondria is the powerhouse of the cell.",
    "France borders Spain, Italy and Germany.",
]


def _rerank_models(upstream: FakeUpstream) -> list[dict[str, Any]]:
    base = f"{upstream.base_url}/v1"
    rerank = {
        "name": "rerank-test",
        "kind": "rerank",
        "deployments": [
            {"provider": "openai", "base_url": base, "model": "fake-rerank", "name": "first"},
            {"provider": "openai", "base_url": base, "model": "fake-rerank-2", "name": "second"},
        ],
    }
    return [*models(upstream), rerank]


@pytest.fixture
async def server(database_url: str, upstream: FakeUpstream) -> AsyncIterator[AppServer]:
    async with serve(database_url, upstream, models=_rerank_models(upstream)) as running:
        yield running


async def test_documents_come_back_best_first_from_the_upstream_or_the_local_model(
    server: AppServer, upstream: FakeUpstream
) -> None:
    reply = await call(
        server,
        "POST",
        "/v1/rerank",
        json={
            "model": "rerank-test",
            "query": "What is the capital of France?",
            "documents": [DOCUMENTS[1], {"text": DOCUMENTS[0]}, DOCUMENTS[2]],
            "top_n": 2,
            "return_documents": True,
        },
    )
    assert reply.status == 200, reply.body
    results = reply.body["results"]
    assert len(results) == 2
    assert results[0]["index"] == 1
    assert results[0]["document"] == {"text": DOCUMENTS[0]}
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]
    assert reply.body["usage"]["total_tokens"] > 0
    assert reply.body["model"] == "rerank-test"
    sent = upstream.last_request("/v1/rerank")
    assert sent is not None
    assert sent.body["model"] == "fake-rerank"
    assert sent.body["documents"][1] == DOCUMENTS[0]  # objects relayed as plain strings
    assert sent.body["top_n"] == 2
    assert reply.headers["x-propylon-deployment"] == "first"
    (record,) = await records(server, 1, f"request_id={reply.headers['x-request-id']}")
    assert record["endpoint"] == "rerank"
    assert record["prompt_tokens"] == reply.body["usage"]["total_tokens"]

    plain = await call(
        server,
        "POST",
        "/v1/rerank",
        json={"model": "rerank-test", "query": "cell biology", "documents": DOCUMENTS},
    )
    assert plain.status == 200, plain.body
    assert [set(r) for r in plain.body["results"]] == [{"index", "relevance_score"}] * 3

    local = await call(
        server,
        "POST",
        "/v1/rerank",
        json={
            "model": "local/minilm-rerank",
            "query": "Which city is the capital of France?",
            "documents": DOCUMENTS,
        },
    )
    assert local.status == 200, local.body
    assert local.body["results"][0]["index"] == 0
    assert local.body["results"][-1]["index"] == 1
    assert local.body["usage"]["total_tokens"] > 0
    assert local.headers["x-propylon-deployment"].startswith("local")


async def test_failures_fall_back_and_end_in_clear_errors(
    server: AppServer, upstream: FakeUpstream
) -> None:
    body = {"model": "rerank-test", "query": "France", "documents": DOCUMENTS}
    upstream.set_behaviour(
        Behaviour(faults=(Fault(kind="status", status=503, models=("fake-rerank",)),))
    )
    reply = await call(server, "POST", "/v1/rerank", json=body)
    assert reply.status == 200, reply.body
    assert reply.headers["x-propylon-deployment"] == "second"
    assert reply.headers["x-propylon-route"].startswith("first=")

    upstream.set_behaviour(Behaviour(faults=(Fault(kind="status", status=503),)))
    failed = await call(server, "POST", "/v1/rerank", json=body)
    assert failed.status in (502, 503), failed.body
    assert failed.body["error"]["message"]
    upstream.set_behaviour(Behaviour())

    for bad, param in [
        ({"query": "q", "documents": ["a"]}, "model"),
        ({"model": "rerank-test", "documents": ["a"]}, "query"),
        ({"model": "rerank-test", "query": "q", "documents": []}, "documents"),
        ({"model": "rerank-test", "query": "q", "documents": [{"title": "a"}]}, "documents"),
        ({"model": "rerank-test", "query": "q", "documents": ["a"], "top_n": 0}, "top_n"),
    ]:
        refused = await call(server, "POST", "/v1/rerank", json=bad)
        assert refused.status == 400, refused.body
        assert refused.body["error"]["param"] == param
    chat_model = {"model": "gpt-test", "query": "q", "documents": ["a"]}
    not_rerank = await call(server, "POST", "/v1/rerank", json=chat_model)
    assert not_rerank.status == 404, not_rerank.body
    assert "rerank-test" in not_rerank.body["error"]["message"]


async def test_rerank_takes_the_keys_scopes_and_rate_limits(server: AppServer) -> None:
    body = {"model": "rerank-test", "query": "France", "documents": DOCUMENTS}
    assert (await call(server, "POST", "/v1/rerank", json=body, key=None)).status == 401
    access = server.app.state.services.access
    chat_only, _ = await access.create_key("test", features=["chat"])
    refused = await call(server, "POST", "/v1/rerank", json=body, key=chat_only)
    assert refused.status == 403, refused.body
    one_a_minute, _ = await access.create_key("test", limits=Limits(rpm=1))
    assert (await call(server, "POST", "/v1/rerank", json=body, key=one_a_minute)).status == 200
    limited = await call(server, "POST", "/v1/rerank", json=body, key=one_a_minute)
    assert limited.status == 429, limited.body
