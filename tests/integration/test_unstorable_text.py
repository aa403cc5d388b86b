"""What PostgreSQL cannot store (a NUL, a lone surrogate) is refused at the edge with a 400
naming the field, on every input that once answered 500 (issue 27)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from propylon.testing import FakeUpstream
from tests.integration.observe.support import ADMIN, serve
from tests.support.servers import AppServer


@pytest.fixture
async def server(database_url: str, upstream: FakeUpstream) -> AsyncIterator[AppServer]:
    async with serve(database_url, upstream) as running:
        yield running


def multipart(field: str, value: str) -> tuple[bytes, dict[str, str]]:
    """A multipart upload whose ``field`` (``filename`` or a form field) holds ``value``, built
    by hand: aiohttp refuses a NUL in a part's headers."""
    boundary = "propylon-test-boundary"
    filename = value if field == "filename" else "a.txt"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/plain\r\n\r\nhello\r\n"
    ]
    if field != "filename":
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"\r\n\r\n{value}\r\n'
        )
    parts.append(f"--{boundary}--\r\n")
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    return "".join(parts).encode("utf-8", "surrogatepass"), headers


NUL = "\x00"
# (what is sent, method, path, JSON body or form, headers, the field the 400 names)
INPUTS: list[tuple[str, str, str, Any, dict[str, str], str]] = [
    ("collection name", "POST", "/v1/collections", {"name": f"a{NUL}"}, {}, "name"),
    (
        "collection description",
        "POST",
        "/v1/collections",
        {"name": "other", "description": NUL},
        {},
        "description",
    ),
    (
        "collection metadata",
        "POST",
        "/v1/collections",
        {"name": "third", "metadata": {"team": NUL}},
        {},
        "metadata.team",
    ),
    ("upload filename", "POST", "/v1/collections/docs/documents", "filename", {}, "filename"),
    (
        "upload external_id",
        "POST",
        "/v1/collections/docs/documents",
        "external_id",
        {},
        "external_id",
    ),
    ("upload metadata", "POST", "/v1/collections/docs/documents", "metadata", {}, "metadata.k"),
    (
        "text external_id",
        "POST",
        "/v1/collections/docs/documents",
        {"text": "hi", "external_id": NUL},
        {},
        "external_id",
    ),
    (
        "text metadata",
        "POST",
        "/v1/collections/docs/documents",
        {"text": "hi", "metadata": {"k": f"x{NUL}"}},
        {},
        "metadata.k",
    ),
    ("log filter model", "GET", "/v1/logs?model=%00", None, {}, "model"),
    ("log filter metadata", "GET", "/v1/logs?metadata.user=a%00", None, {}, "metadata.user"),
    ("stats window", "GET", "/v1/stats?window=%00", None, {}, "window"),
    (
        "search collections",
        "POST",
        "/v1/search",
        {"collections": [NUL], "query": "q"},
        {},
        "collections[0]",
    ),
    (
        "search filter",
        "POST",
        "/v1/collections/docs/search",
        {"query": "q", "filter": {"k": NUL}},
        {},
        "filter.k",
    ),
    (
        "answer question",
        "POST",
        "/v1/collections/docs/answer",
        {"question": f"why{NUL}"},
        {},
        "question",
    ),
    (
        "run content",
        "POST",
        "/v1/runs",
        {
            "type": "chat",
            "request": {"model": "gpt-test", "messages": [{"role": "user", "content": NUL}]},
        },
        {},
        "request.messages[0].content",
    ),
    ("collection id in the path", "GET", "/v1/collections/%00", None, {}, "path"),
    ("job id in the path", "GET", "/v1/jobs/%00", None, {}, "path"),
    ("admin tenant filter", "GET", "/admin/keys?tenant=%00", None, {}, "tenant"),
    ("admin tenant name", "POST", "/admin/tenants", {"name": f"t{NUL}"}, {}, "name"),
    ("admin key name", "POST", "/admin/keys", {"tenant": "test", "name": f"k{NUL}"}, {}, "name"),
    (
        "source config",
        "POST",
        "/v1/collections/docs/sources",
        {"type": "folder", "config": {"path": f"/tmp/a{NUL}"}},
        {},
        "config.path",
    ),
    (
        "feedback metadata",
        "POST",
        "/v1/feedback",
        {"request_id": "r1", "score": 1, "metadata": {"k": NUL}},
        {},
        "metadata.k",
    ),
    (
        "chat metadata",
        "POST",
        "/v1/chat/completions",
        {
            "model": "gpt-test",
            "messages": [{"role": "user", "content": "hi"}],
            "metadata": {"k": NUL},
        },
        {},
        "metadata.k",
    ),
    (
        "chat metadata header",
        "POST",
        "/v1/chat/completions",
        {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
        {"x-propylon-metadata": '{"k": "\\u0000"}'},
        "metadata.k",
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "field"),
    [pytest.param(*case[1:], id=case[0]) for case in INPUTS],
)
async def test_a_nul_is_refused_with_a_400_naming_the_field(
    server: AppServer,
    method: str,
    path: str,
    body: Any,
    headers: dict[str, str],
    field: str,
) -> None:
    async with (
        aiohttp.ClientSession(headers=server.headers) as http,
        http.post(f"{server.v1}/collections", json={"name": "docs"}) as made,
    ):
        assert made.status == 201
    key = ADMIN if path.startswith(("/admin", "/v1/logs")) else server.api_key
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as http:
        if isinstance(body, str):  # a multipart upload with that field holding the NUL
            value = '{"k": "\\u0000"}' if body == "metadata" else f"a{NUL}.txt"
            data, form_headers = multipart(body, value)
            sent: dict[str, Any] = {"data": data}
            headers = {**headers, **form_headers}
        else:
            sent = {"json": body} if body is not None else {}
        async with http.request(method, f"{server.url}{path}", headers=headers, **sent) as resp:
            reply = await resp.json(content_type=None)
            assert resp.status == 400, reply
    assert reply["error"]["param"] == field
    assert reply["error"]["code"] == "unstorable_text"
    assert "NUL" in reply["error"]["message"]
