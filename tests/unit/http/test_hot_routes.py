"""The hot-route dispatcher: its endpoints, its errors, and everything else passed on."""

from typing import Any

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Message

from propylon.errors import RateLimited
from propylon.http.hot_routes import HotRoutes


async def ok(request: Request) -> Response:
    return Response(await request.body(), media_type="application/json")


async def limited(request: Request) -> Response:
    raise RateLimited("Too many requests for this key.", retry_after=2.0)


async def broken(request: Request) -> Response:
    raise RuntimeError("a bug, with sk-abcdefghijklmnopqrstuvwxyz012345 in its message")


async def call(app: HotRoutes, method: str, path: str, root_path: str = "") -> list[Message]:
    scope: dict[str, Any] = {
        "type": "http",
        "method": method,
        "path": root_path + path,
        "root_path": root_path,
        "headers": [(b"content-type", b"application/json")],
        "query_string": b"",
        "state": {},
    }
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b'{"x": 1}', "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent


class Fallback:
    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await Response(b"fallback", status_code=404)(scope, receive, send)


@pytest.fixture
def fallback() -> Fallback:
    return Fallback()


@pytest.fixture
def app(fallback: Fallback) -> HotRoutes:
    return HotRoutes(fallback, {"/v1/ok": ok, "/v1/limited": limited, "/v1/broken": broken})


async def test_a_hot_route_is_served_without_the_app_behind(
    app: HotRoutes, fallback: Fallback
) -> None:
    start, body = await call(app, "POST", "/v1/ok")
    assert (start["status"], body["body"]) == (200, b'{"x": 1}')
    assert fallback.paths == []


async def test_a_mounted_root_path_is_stripped(app: HotRoutes, fallback: Fallback) -> None:
    start, _ = await call(app, "POST", "/v1/ok", root_path="/gateway")
    assert start["status"] == 200 and fallback.paths == []


async def test_other_methods_and_paths_go_on_to_the_app(app: HotRoutes, fallback: Fallback) -> None:
    await call(app, "GET", "/v1/ok")
    await call(app, "POST", "/v1/ok/")
    await call(app, "POST", "/v1/models")
    assert fallback.paths == ["/v1/ok", "/v1/ok/", "/v1/models"]


async def test_a_propylon_error_gets_its_openai_shape_status_and_headers(app: HotRoutes) -> None:
    start, body = await call(app, "POST", "/v1/limited")
    assert start["status"] == 429
    assert dict(start["headers"])[b"retry-after"] == b"2"
    error = orjson.loads(body["body"])["error"]
    assert error["type"] == "rate_limit_error"


async def test_an_unexpected_error_is_a_redacted_500_in_openai_shape(app: HotRoutes) -> None:
    start, body = await call(app, "POST", "/v1/broken")
    assert start["status"] == 500
    error = orjson.loads(body["body"])["error"]
    assert error["message"] == "The server failed to handle this request."
    assert b"sk-" not in body["body"]
