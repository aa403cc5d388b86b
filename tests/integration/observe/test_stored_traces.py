"""Traces kept in PostgreSQL: a `rag/` answer, a run and an ingestion job are each one trace
(guard, retrieval with its chunks and scores, model calls under their parent, verification),
read back through `GET /v1/traces`, only by their tenant, and deleted with the request log."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDictProxy

from propylon.observe.request_log import RequestLog
from tests.integration.rag.test_retrieval_http import LOCAL_MODELS, VOLCANOES
from tests.support.databases import PostgresServer, create_database
from tests.support.job_rig import IN_PROCESS
from tests.support.servers import AppServer, serve_app
from tests.support.waiting import eventually, finished


@pytest.fixture(scope="module")
async def server(pg_server: PostgresServer) -> AsyncIterator[AppServer]:
    jobs = IN_PROCESS
    async with serve_app(
        database_url=await create_database(pg_server),
        models=LOCAL_MODELS,
        jobs=jobs,
        observe={"flush_interval_s": 0.05},
    ) as server:
        yield server


async def call(
    server: AppServer, method: str, path: str, body: Any = None, key: str | None = None
) -> tuple[int, Any, CIMultiDictProxy[str]]:
    headers = {"Authorization": f"Bearer {key or server.api_key}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{server.v1}{path}", json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json(), resp.headers


async def traces_of(server: AppServer, query: str, root: str) -> list[dict[str, Any]]:
    """The spans of the one trace found by ``query``, once its ``root`` span is stored."""

    async def stored() -> list[dict[str, Any]] | None:
        status, body, _ = await call(server, "GET", f"/traces?{query}")
        assert status == 200, body
        if len(body["data"]) != 1:
            return None
        spans: list[dict[str, Any]] = body["data"][0]["spans"]
        return spans if any(s["name"] == root for s in spans) else None

    return await eventually(stored, f"the trace of {query} with its {root} span")


def one(spans: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (found,) = [s for s in spans if s["name"] == name]
    return found


def under(spans: list[dict[str, Any]], child: dict[str, Any], parent: dict[str, Any]) -> bool:
    """``child`` hangs somewhere below ``parent``."""
    by_id = {s["span_id"]: s for s in spans}
    at = child
    while at["parent_span_id"] is not None:
        if at["parent_span_id"] == parent["span_id"]:
            return True
        at = by_id[at["parent_span_id"]]
    return False


@pytest.fixture(scope="module")
async def ingested(server: AppServer) -> dict[str, Any]:
    status, collection, _ = await call(
        server,
        "POST",
        "/collections",
        {"name": "kb", "chunking": {"max_tokens": 40, "overlap_tokens": 8}},
    )
    assert status == 201, collection
    status, accepted, _ = await call(
        server, "POST", "/collections/kb/documents", {"text": VOLCANOES, "filename": "v.md"}
    )
    assert status == 202, accepted

    async def job() -> dict[str, Any]:
        found: dict[str, Any] = (await call(server, "GET", f"/jobs/{accepted['job_id']}"))[1]
        return found

    done = await finished(job, "the ingestion job to finish")
    assert done["state"] == "succeeded", done
    found: dict[str, Any] = accepted
    return found


async def test_a_rag_answer_is_one_trace_of_guard_retrieval_model_and_verification(
    server: AppServer, ingested: dict[str, Any]
) -> None:
    body = {"model": "rag/kb", "messages": [{"role": "user", "content": "How high is Etna?"}]}
    status, reply, headers = await call(server, "POST", "/chat/completions", body)
    assert status == 200, reply
    request_id = headers["x-request-id"]

    spans = await traces_of(server, f"request_id={request_id}", "rag.answer")
    assert len({s["trace_id"] for s in spans}) == 1
    root = one(spans, "rag.answer")
    assert root["parent_span_id"] is None
    assert root["subject"] == f"request:{request_id}"
    retrieve = one(spans, "propylon.retrieve")
    model = one(spans, "chat local/extractive")
    verify = one(spans, "propylon.verify")
    guard = one(spans, "propylon.guard")
    assert all(under(spans, s, root) for s in (retrieve, model, verify))
    assert under(spans, guard, model)
    hits = retrieve["attributes"]
    assert hits["propylon.retrieval.hits"] == len(hits["propylon.retrieval.chunk_ids"]) > 0
    assert len(hits["propylon.retrieval.scores"]) == hits["propylon.retrieval.hits"]
    assert all(isinstance(score, float) for score in hits["propylon.retrieval.scores"])
    # The question's embedding is an inner call: it hangs under the retrieval.
    embedding = [s for s in spans if s["name"].startswith("embeddings")]
    assert embedding and all(under(spans, s, retrieve) for s in embedding)
    assert verify["attributes"]["propylon.citations"] == len(reply["propylon"]["citations"])


async def test_another_tenant_cannot_find_or_read_the_trace(
    server: AppServer, ingested: dict[str, Any]
) -> None:
    other, _ = await server.app.state.services.access.create_key("intruder")
    body = {"model": "rag/kb", "messages": [{"role": "user", "content": "Where is Etna?"}]}
    status, _, headers = await call(server, "POST", "/chat/completions", body)
    assert status == 200
    request_id = headers["x-request-id"]
    (trace_id,) = {
        s["trace_id"] for s in await traces_of(server, f"request_id={request_id}", "rag.answer")
    }

    status, body, _ = await call(server, "GET", f"/traces/{trace_id}", key=other)
    assert status == 404, body
    status, body, _ = await call(server, "GET", f"/traces?request_id={request_id}", key=other)
    assert status == 200 and body["data"] == []
    status, body, _ = await call(server, "GET", f"/traces/{trace_id}")
    assert status == 200 and body["trace_id"] == trace_id


async def test_an_ingestion_job_is_one_trace_with_its_embedding_calls(
    server: AppServer, ingested: dict[str, Any]
) -> None:
    spans = await traces_of(server, f"job_id={ingested['job_id']}", "job rag.ingest")
    root = one(spans, "job rag.ingest")
    assert root["parent_span_id"] is None
    embedding = [s for s in spans if s["name"].startswith("embeddings")]
    assert embedding and all(under(spans, s, root) for s in embedding)


async def test_a_run_is_one_trace_with_a_span_per_step_and_its_model_call_below(
    server: AppServer,
) -> None:
    body = {
        "type": "chat",
        "request": {"model": "local/extractive", "messages": [{"role": "user", "content": "hi"}]},
    }
    status, run, _ = await call(server, "POST", "/runs", body)
    assert status == 202, run
    spans = await traces_of(server, f"run_id={run['id']}", "run chat")
    job = one(spans, "job run")
    run_span = one(spans, "run chat")
    assert job["parent_span_id"] is None and under(spans, run_span, job)
    steps = [s for s in spans if s["name"].startswith("run.step")]
    models = [s for s in spans if s["name"] == "chat local/extractive"]
    assert steps and models
    assert all(any(under(spans, m, step) for step in steps) for m in models)


@pytest.mark.parametrize("query", ["", "request_id=a&run_id=b"])
async def test_finding_traces_needs_exactly_one_subject(server: AppServer, query: str) -> None:
    status, body, _ = await call(server, "GET", f"/traces?{query}")
    assert status == 400 and body["error"]["param"] == "request_id"


async def test_an_unknown_or_malformed_trace_id_is_404(server: AppServer) -> None:
    for trace_id in ("0" * 32, "not-a-trace"):
        status, body, _ = await call(server, "GET", f"/traces/{trace_id}")
        assert status == 404, body


async def test_traces_are_deleted_with_the_request_log(
    server: AppServer, ingested: dict[str, Any]
) -> None:
    services = server.app.state.services
    await traces_of(server, f"job_id={ingested['job_id']}", "job rag.ingest")
    async with services.database.connection() as conn:
        await conn.execute("UPDATE spans SET started_at = started_at - interval '40 days'")
    await RequestLog(services.database, retention_days=30).delete_expired()
    async with services.database.connection() as conn:
        left = await (await conn.execute("SELECT count(*) AS n FROM spans")).fetchone()
    assert left is not None and left["n"] == 0
