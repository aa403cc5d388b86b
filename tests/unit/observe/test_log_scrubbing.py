"""Log records lose query strings, bearer tokens, API-key header values and Propylon keys."""

from __future__ import annotations

import logging

import pytest

from propylon.observe.logging import ScrubSecrets

KEY = "ppl_KFJpplXtTot2WTNi4ZfiZIt2h-HwMEaJw3-KCI_D676c19"


def rendered(msg: str, *args: object) -> str:
    record = logging.LogRecord("uvicorn.error", logging.INFO, "", 0, msg, args, None)
    assert ScrubSecrets().filter(record)
    return record.getMessage()


def test_a_websocket_access_line_loses_its_query_string() -> None:
    line = rendered('%s - "WebSocket %s" [accepted]', "127.0.0.1:5", f"/v1/jobs/j?api_key={KEY}")
    assert line == '127.0.0.1:5 - "WebSocket /v1/jobs/j" [accepted]'


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("authorization", f"Bearer {KEY}"),
        ("x-api-key", "sk-ant-secret"),
        ("api-key", "azure-secret"),
        ("sec-websocket-protocol", "propylon, propylon-ticket.abcDEF_123-x"),
    ],
)
def test_debug_header_lines_lose_their_secrets(header: str, value: str) -> None:
    line = rendered("< %s: %s", header, value)
    assert "REDACTED" in line
    assert value.split()[-1] not in line


def test_a_key_anywhere_in_a_message_is_redacted() -> None:
    assert rendered("failed for %r", {"token": KEY}) == "failed for {'token': '[REDACTED]'}"


def test_an_ordinary_line_is_left_alone() -> None:
    assert rendered("worker ready: %d jobs", 3) == "worker ready: 3 jobs"


def test_extra_fields_and_tracebacks_are_scrubbed_too() -> None:
    from propylon.observe.logging import JSONFormatter

    try:
        raise RuntimeError(f"upstream said: bad key {KEY}")
    except RuntimeError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, "", 0, "failed", None, sys.exc_info())
    record.error = f"Authorization: Bearer {KEY}"
    line = JSONFormatter().format(record)
    assert KEY not in line
    assert "REDACTED" in line
