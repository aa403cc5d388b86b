"""Property: a NUL or a lone surrogate in a string field of a route is never a 5xx. In a
JSON body either is a 400 naming the field; in the URL a NUL is a 400, and a lone surrogate
(percent-encoded) is decoded by the server into U+FFFD, an ordinary character: any non-5xx
answer."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from propylon.testing import FakeUpstream
from tests.integration.observe.support import ADMIN, serve
from tests.support.servers import AppServer

Body = Callable[[str], dict[str, Any]]


def chat(metadata: str) -> dict[str, Any]:
    return {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"k": metadata},
    }


# Every string field of a JSON body that is stored, filtered on, or looked up.
BODIES: list[tuple[str, str, Body]] = [
    ("/v1/collections", "tenant", lambda s: {"name": s}),
    ("/v1/collections", "tenant", lambda s: {"name": "n", "description": s}),
    ("/v1/collections", "tenant", lambda s: {"name": "n", "embedding_model": s}),
    ("/v1/collections", "tenant", lambda s: {"name": "n", "metadata": {s: "v"}}),
    ("/v1/collections/docs/documents", "tenant", lambda s: {"text": s}),
    ("/v1/collections/docs/documents", "tenant", lambda s: {"text": "t", "external_id": s}),
    ("/v1/collections/docs/documents", "tenant", lambda s: {"text": "t", "filename": s}),
    ("/v1/collections/docs/documents", "tenant", lambda s: {"text": "t", "metadata": {"k": s}}),
    ("/v1/search", "tenant", lambda s: {"collections": [s], "query": "q"}),
    ("/v1/search", "tenant", lambda s: {"collections": ["docs"], "query": s}),
    ("/v1/collections/docs/search", "tenant", lambda s: {"query": "q", "mode": s}),
    ("/v1/collections/docs/search", "tenant", lambda s: {"query": "q", "filter": {"k": s}}),
    ("/v1/collections/docs/answer", "tenant", lambda s: {"question": s}),
    ("/v1/collections/docs/answer", "tenant", lambda s: {"question": "q", "model": s}),
    ("/v1/runs", "tenant", lambda s: {"type": "answer", "collection": "docs", "question": s}),
    ("/v1/runs", "tenant", lambda s: {"type": "answer", "collection": s, "question": "q"}),
    ("/v1/chat/completions", "tenant", chat),
    ("/admin/tenants", "admin", lambda s: {"name": s}),
    ("/admin/keys", "admin", lambda s: {"tenant": s, "name": "k"}),
    ("/admin/keys", "admin", lambda s: {"tenant": "test", "name": s}),
]
# Every URL with a string a caller chooses: in the path, or as a query parameter.
URLS: list[tuple[str, str]] = [
    ("/v1/collections/{}", "tenant"),
    ("/v1/collections/docs/documents/{}", "tenant"),
    ("/v1/jobs/{}", "tenant"),
    ("/v1/runs/{}", "tenant"),
    ("/v1/logs?model={}", "admin"),
    ("/v1/logs?metadata.user={}", "admin"),
    ("/v1/logs?request_id={}", "admin"),
    ("/v1/stats?window={}", "admin"),
    ("/admin/keys?tenant={}", "admin"),
    ("/admin/keys/{}/usage", "admin"),
]

UNSTORABLE = st.sampled_from(["\x00", "\ud800", "\udbff", "\udc00", "\udfff"])
HOSTILE = st.builds(
    lambda a, bad, b: a + bad + b, st.text(max_size=8), UNSTORABLE, st.text(max_size=8)
)


@pytest.fixture
async def server(database_url: str, upstream: FakeUpstream) -> AsyncIterator[AppServer]:
    async with serve(database_url, upstream) as running:
        async with (
            aiohttp.ClientSession(headers=running.headers) as http,
            http.post(f"{running.v1}/collections", json={"name": "docs"}) as made,
        ):
            assert made.status == 201
        yield running


def auth(server: AppServer, who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN if who == 'admin' else server.api_key}"}


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=st.sampled_from(BODIES), text=HOSTILE)
async def test_a_hostile_string_in_a_json_body_is_a_400(
    server: AppServer, case: tuple[str, str, Body], text: str
) -> None:
    path, who, body = case
    # The standard library writes a lone surrogate as its escape (`"\udc80"`), as clients do.
    raw = json.dumps(body(text)).encode()
    headers = {**auth(server, who), "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.url}{path}", data=raw, headers=headers) as resp,
    ):
        reply = await resp.json(content_type=None)
    assert resp.status == 400, (path, text, reply)
    assert reply["error"]["code"] == "unstorable_text", reply  # a NUL or a surrogate alike
    assert reply["error"]["param"], reply  # the field is named


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=st.sampled_from(URLS), text=HOSTILE)
async def test_a_hostile_string_in_the_url_is_never_a_5xx_and_a_nul_a_400(
    server: AppServer, case: tuple[str, str], text: str
) -> None:
    template, who = case
    url = server.url + template.format(quote(text.encode("utf-8", "surrogatepass"), safe=""))
    async with (
        aiohttp.ClientSession() as http,
        http.get(url, headers=auth(server, who)) as resp,
    ):
        reply = await resp.text()
    assert resp.status < 500, (url, reply)
    if "\x00" in text:
        assert resp.status == 400, (url, reply)
