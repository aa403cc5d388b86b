"""Tenant isolation: for every resource type, tenant A's key finds nothing of tenant B's —
404, not 403, and never B's data."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from propylon.testing import FakeUpstream
from tests.support.databases import PostgresServer, create_database
from tests.support.servers import AppServer, local_models, serve_app
from tests.support.waiting import eventually, finished

SECRET = "The launch code of tenant B is 7-ALPHA-9."


class Tenant:
    def __init__(self, server: AppServer, key: str) -> None:
        self.server, self.key = server, key

    async def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        all_headers = {"Authorization": f"Bearer {self.key}", **(headers or {})}
        async with (
            aiohttp.ClientSession() as http,
            http.request(method, f"{self.server.v1}{path}", json=body, headers=all_headers) as resp,
        ):
            return resp.status, await resp.json(), dict(resp.headers)

    async def get(self, path: str) -> dict[str, Any]:
        return (await self.call("GET", path))[1]


@pytest.fixture(scope="module")
async def world(pg_server: PostgresServer) -> AsyncIterator[dict[str, Any]]:
    """Tenant B owns a collection, a document, an ingestion job, a run, a conversation, a
    cached answer and request logs; tenant A owns nothing."""
    async with FakeUpstream() as upstream:
        models = [
            *[m.model_dump() for m in local_models()],
            {
                "name": "gpt-test",
                "deployments": [{"provider": "openai", "base_url": f"{upstream.base_url}/v1"}],
            },
        ]
        async with serve_app(
            database_url=await create_database(pg_server),
            models=models,
            jobs={"in_process_worker": True},
        ) as server:
            access = server.app.state.services.access
            a = Tenant(server, (await access.create_key("tenant-a"))[0])
            b = Tenant(server, (await access.create_key("tenant-b"))[0])
            _, collection, _ = await b.call("POST", "/collections", {"name": "secrets"})
            _, document, _ = await b.call(
                "POST", f"/collections/{collection['id']}/documents", {"text": SECRET}
            )
            job = await finished(
                lambda: b.get(f"/jobs/{document['job_id']}"), "the secret to be ingested"
            )
            assert job["state"] == "succeeded", job
            _, answer, _ = await b.call(
                "POST",
                f"/collections/{collection['id']}/answer",
                {"question": "What is the launch code?", "conversation_id": str(uuid.uuid4())},
            )
            _, run, _ = await b.call(
                "POST",
                "/runs",
                {
                    "type": "chat",
                    "request": {
                        "model": "gpt-test",
                        "messages": [{"role": "user", "content": "hello"}],
                    },
                },
            )
            cached_question = {
                "model": "gpt-test",
                "temperature": 0,
                "messages": [{"role": "user", "content": "What is tenant B's secret plan?"}],
            }
            _, _, headers = await b.call("POST", "/chat/completions", cached_question)
            yield {
                "a": a,
                "b": b,
                "upstream": upstream,
                "collection": collection,
                "document": document,
                "job_id": document["job_id"],
                "run": run,
                "answer": answer,
                "cached_question": cached_question,
                "request_id": headers.get("x-request-id"),
            }


def assert_not_found(status: int, body: dict[str, Any]) -> None:
    assert status == 404, body
    assert SECRET not in str(body)
    assert body["error"]["type"] == "invalid_request_error"


async def test_collections_of_another_tenant_are_not_found(world: dict[str, Any]) -> None:
    a, collection = world["a"], world["collection"]
    for path in (f"/collections/{collection['id']}", "/collections/secrets"):
        assert_not_found(*(await a.call("GET", path))[:2])
    status, listed, _ = await a.call("GET", "/collections")
    assert status == 200
    assert listed["data"] == []
    assert_not_found(*(await a.call("DELETE", f"/collections/{collection['id']}"))[:2])


async def test_documents_of_another_tenant_are_not_found(world: dict[str, Any]) -> None:
    a, collection, document = world["a"], world["collection"], world["document"]
    path = f"/collections/{collection['id']}/documents"
    assert_not_found(*(await a.call("GET", path))[:2])
    assert_not_found(*(await a.call("GET", f"{path}/{document['id']}"))[:2])
    assert_not_found(*(await a.call("POST", path, {"text": "intrusion"}))[:2])


async def test_search_and_answers_over_another_tenants_collection_are_not_found(
    world: dict[str, Any],
) -> None:
    a, collection = world["a"], world["collection"]
    status, body, _ = await a.call(
        "POST", f"/collections/{collection['id']}/search", {"query": "launch code"}
    )
    assert_not_found(status, body)
    status, body, _ = await a.call(
        "POST", "/search", {"query": "launch code", "collections": [collection["id"]]}
    )
    assert_not_found(status, body)
    status, body, _ = await a.call(
        "POST",
        "/chat/completions",
        {"model": "rag/secrets", "messages": [{"role": "user", "content": "launch code?"}]},
    )
    assert_not_found(status, body)


async def test_jobs_of_another_tenant_are_not_found(world: dict[str, Any]) -> None:
    a, job_id = world["a"], world["job_id"]
    assert_not_found(*(await a.call("GET", f"/jobs/{job_id}"))[:2])
    assert_not_found(*(await a.call("POST", f"/jobs/{job_id}/cancel"))[:2])


async def test_runs_of_another_tenant_are_not_found(world: dict[str, Any]) -> None:
    a, run = world["a"], world["run"]
    assert_not_found(*(await a.call("GET", f"/runs/{run['id']}"))[:2])
    assert_not_found(*(await a.call("POST", f"/runs/{run['id']}/cancel"))[:2])
    status, listed, _ = await a.call("GET", "/runs")
    assert status == 200
    assert listed["data"] == []


async def test_conversations_of_another_tenant_are_not_found(world: dict[str, Any]) -> None:
    a, answer = world["a"], world["answer"]
    conversation = answer.get("conversation_id")
    assert conversation, answer
    assert_not_found(*(await a.call("DELETE", f"/conversations/{conversation}"))[:2])


async def test_logs_of_another_tenant_are_never_shown(world: dict[str, Any]) -> None:
    a, b = world["a"], world["b"]

    async def written() -> dict[str, Any] | None:  # the request log is written in the background
        _, own, _ = await b.call("GET", "/logs")
        return own if own["data"] else None

    own = await eventually(written, "tenant B's request log records")
    b_tenant = own["data"][0]["tenant_id"]
    status, logs, _ = await a.call("GET", "/logs")
    assert status == 200
    assert all(entry["tenant_id"] != b_tenant for entry in logs["data"])
    assert all(entry["key_prefix"] == a.key[:12] for entry in logs["data"])
    assert SECRET not in str(logs)
    if world["request_id"]:
        _, logs, _ = await a.call("GET", f"/logs?request_id={world['request_id']}")
        assert logs["data"] == []
    status, stats, _ = await a.call("GET", "/stats")
    assert status == 200
    assert stats["requests"] <= 1, "at most A's own /v1/logs call"


async def test_cached_answers_never_cross_tenants(world: dict[str, Any]) -> None:
    a, b, upstream = world["a"], world["b"], world["upstream"]
    _, _, again = await b.call("POST", "/chat/completions", world["cached_question"])
    assert again["x-propylon-cache"] == "hit-exact", "B's own repeat is a hit"
    calls = upstream.calls["/v1/chat/completions"]
    _, _, headers = await a.call("POST", "/chat/completions", world["cached_question"])
    assert headers["x-propylon-cache"] != "hit-exact"
    assert not headers["x-propylon-cache"].startswith("hit")
    assert upstream.calls["/v1/chat/completions"] == calls + 1
