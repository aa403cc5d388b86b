"""Numbers and times from query parameters: read when ASCII and in range, else a 400 naming
the parameter, never another exception. URLs to call: http(s), a host, a real port."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from propylon.errors import InvalidRequest
from propylon.params import BIGINT_MAX, MAX_EPOCH_S, digits, http_url, int_param, time_param


def test_ascii_digits_within_the_range_are_read() -> None:
    assert digits("0", 0, 5) == 0
    assert digits("005", 0, 5) == 5
    assert digits(str(BIGINT_MAX), 0, BIGINT_MAX) == BIGINT_MAX


@pytest.mark.parametrize(
    "text", ["²", "١٢", "１", "+1", "-1", " 1", "1 ", "1_0", "1.0", "1e3", "", "6", "9" * 100_000]
)
def test_anything_else_is_not_a_number(text: str) -> None:
    assert digits(text, 0, 5) is None


@given(st.text())
def test_any_text_is_a_number_in_range_or_none(text: str) -> None:
    number = digits(text, 0, BIGINT_MAX)
    assert number is None or str(number) == (text.lstrip("0") or "0")


def test_a_refusal_is_a_400_naming_the_parameter_and_the_range() -> None:
    with pytest.raises(InvalidRequest) as refused:
        int_param("²", "limit", 1, 1000)
    assert (refused.value.status, refused.value.param) == (400, "limit")
    assert refused.value.message == "`limit` must be an integer from 1 to 1000."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1767225600", datetime(2026, 1, 1, tzinfo=UTC)),
        ("1767225600.25", datetime(2026, 1, 1, 0, 0, 0, 250_000, tzinfo=UTC)),
        ("2026-01-01T00:00:00", datetime(2026, 1, 1, tzinfo=UTC)),
        ("0001-01-01T00:00:00+14:00", datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=14)))),
        (f"{MAX_EPOCH_S - 1}.9999999", datetime(9999, 1, 1, tzinfo=UTC)),
    ],
)
def test_times_are_iso_8601_or_epoch_seconds(text: str, expected: datetime) -> None:
    assert time_param(text, "since") == expected


@pytest.mark.parametrize(
    "text", [str(MAX_EPOCH_S), "100000000000000000000", "1e20", "²", "-1", "1.", "soon"]
)
def test_a_time_out_of_reach_is_a_400_naming_the_parameter(text: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        time_param(text, "until")
    assert refused.value.param == "until"


@given(st.text())
def test_any_text_is_a_time_or_a_400(text: str) -> None:
    with contextlib.suppress(InvalidRequest):
        time_param(text, "since")


@pytest.mark.parametrize(
    "url", ["http://example.com/mcp", "https://[::1]:8443/x", "http://10.0.0.5:65535"]
)
def test_an_http_url_with_a_host_and_a_real_port_is_split(url: str) -> None:
    parts = http_url(url)
    assert parts is not None and parts.hostname


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1",  # urlsplit raises
        "http://",
        "http:///x",
        "http://a b/",
        "http://example.com:99999/",
        "http://example.com:0/",
        "ftp://example.com/",
        "example.com",
        5,
        None,
    ],
)
def test_anything_else_is_not_a_url_to_call(url: object) -> None:
    assert http_url(url) is None


@given(st.text())
def test_any_text_is_a_url_or_none(text: str) -> None:
    http_url(text)  # never raises
