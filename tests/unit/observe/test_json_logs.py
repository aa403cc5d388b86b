"""Log lines are JSON objects carrying the id of the request being served."""

from __future__ import annotations

import logging

import orjson

from propylon.observe.context import RequestContext, current_request, new_request_id
from propylon.observe.logging import JSONFormatter


def line(message: str, **extra: object) -> dict[str, object]:
    record = logging.LogRecord("propylon.test", logging.INFO, __file__, 1, message, None, None)
    for key, value in extra.items():
        setattr(record, key, value)
    parsed: dict[str, object] = orjson.loads(JSONFormatter().format(record))
    return parsed


def test_a_line_inside_a_request_carries_its_id() -> None:
    token = current_request.set(RequestContext(request_id="req-7"))
    try:
        out = line("hello", status=200)
    finally:
        current_request.reset(token)
    assert (out["msg"], out["request_id"], out["status"], out["level"]) == (
        "hello",
        "req-7",
        200,
        "info",
    )


def test_a_line_outside_requests_has_no_id() -> None:
    assert "request_id" not in line("startup")


def test_request_ids_from_callers_are_kept_only_when_sane() -> None:
    assert new_request_id("abc-123") == "abc-123"
    for bad in (None, "", "x" * 129, "new\nline", "naïve"):
        assert len(new_request_id(bad)) == 32
