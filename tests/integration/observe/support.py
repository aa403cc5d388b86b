"""Helpers of the observability tests: a served app with fast request-log flushes, plain
HTTP calls, and waiting for records to reach the request log."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from multidict import CIMultiDict
from opentelemetry.trace import TracerProvider
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from propylon.app import create_app
from propylon.observe.record import RequestRecord
from propylon.settings import load_settings
from propylon.testing import FakeUpstream
from tests.support.servers import AppServer, deterministic, serve_uvicorn
from tests.support.waiting import eventually

ADMIN = "admin-secret-for-observe-tests"
PRICES = {"gpt-test": {"input": 2.0, "output": 8.0}}  # USD per million tokens


def models(upstream: FakeUpstream) -> list[dict[str, Any]]:
    base = f"{upstream.base_url}/v1"
    return [
        {
            "name": "gpt-test",
            "deployments": [{"provider": "openai", "base_url": base, "model": "fake-gpt"}],
        },
        {
            "name": "embed-test",
            "kind": "embeddings",
            "deployments": [{"provider": "openai", "base_url": base, "model": "fake-embedding"}],
        },
    ]


@asynccontextmanager
async def serve(
    database_url: str,
    upstream: FakeUpstream,
    *,
    tracer_provider: TracerProvider | None = None,
    observe: dict[str, Any] | None = None,
    more_models: list[dict[str, Any]] | None = None,
    **overrides: Any,
) -> AsyncIterator[AppServer]:
    """Propylon on ``database_url`` with `gpt-test` and `embed-test` (or ``models=``; and
    ``more_models``), a key of tenant `test`, and a request log flushed every 50 ms."""
    settings = load_settings(
        None,
        database_url=database_url,
        models=[*(overrides.pop("models", None) or models(upstream)), *(more_models or [])],
        admin_key=ADMIN,
        observe={"flush_interval_s": 0.05, "prices": PRICES, **(observe or {})},
        **deterministic(overrides),
    )
    app = create_app(settings, tracer_provider=tracer_provider)
    async with serve_uvicorn(app) as url:
        key, _ = await app.state.services.access.create_key("test")
        yield AppServer(url, settings, key, app)


class Reply:
    def __init__(self, status: int, headers: CIMultiDict[str], body: Any) -> None:
        self.status, self.headers, self.body = status, headers, body


async def call(
    server: AppServer,
    method: str,
    path: str,
    *,
    key: str | None = "",
    json: Any = None,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """One HTTP call; ``key=""`` uses the server's test key, ``None`` sends none."""
    sent = dict(headers or {})
    chosen = server.api_key if key == "" else key
    if chosen is not None:
        sent["Authorization"] = f"Bearer {chosen}"
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{server.url}{path}", json=json, data=data, headers=sent) as resp,
    ):
        raw = await resp.read()
        body: Any
        try:
            body = await resp.json(content_type=None)
        except ValueError:
            body = raw.decode()
        return Reply(resp.status, CIMultiDict(resp.headers), body)


async def make_collection(server: AppServer, key: str, name: str = "kb") -> None:
    """A collection embedded with `embed-test`, made with ``key``."""
    made = await call(
        server,
        "POST",
        "/v1/collections",
        key=key,
        json={"name": name, "embedding_model": "embed-test"},
    )
    assert made.status == 201, made.body


async def upload(server: AppServer, collection: str, text: bytes) -> dict[str, Any]:
    """``text`` uploaded to ``collection`` as a file, with the server's key: the 202's body."""
    form = aiohttp.FormData()
    form.add_field("file", text, filename="a.txt")
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.v1}/collections/{collection}/documents", data=form, headers=server.headers
        ) as resp,
    ):
        accepted: dict[str, Any] = await resp.json()
    assert resp.status == 202, accepted
    return accepted


async def chat(server: AppServer, content: str = "hello there", **fields: Any) -> Reply:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": content}], **fields}
    return await call(server, "POST", "/v1/chat/completions", json=body)


def samples(text: str) -> dict[str, list[Sample]]:
    """The samples of a `/metrics` exposition, by family name (without ``_total``)."""
    out: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        out[family.name] = list(family.samples)
    return out


def value(found: list[Sample], name: str, **labels: str) -> float:
    """The value of the sample ``name`` whose labels include ``labels``."""
    for sample in found:
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
            return sample.value
    raise AssertionError(f"no sample {name} {labels}")


async def records(
    server: AppServer, expected: int, query: str = "", *, key: str | None = ADMIN
) -> list[dict[str, Any]]:
    """The request log's records matching ``query``, once at least ``expected`` are there
    (waits for the background writer)."""

    async def arrived() -> list[dict[str, Any]] | None:
        reply = await call(server, "GET", f"/v1/logs?limit=500&{query}", key=key)
        assert reply.status == 200, reply.body
        data: list[dict[str, Any]] = reply.body["data"]
        return data if len(data) >= expected else None

    return await eventually(arrived, f"{expected} records for {query!r}")


def record(request_id: str, **fields: Any) -> RequestRecord:
    """A chat record made now (or at ``created_at``), with ``fields``."""
    return RequestRecord(
        **{
            "request_id": request_id,
            "created_at": time.time(),
            "endpoint": "chat",
            "status": 200,
            "latency_ms": 1.0,
            **fields,
        }
    )
