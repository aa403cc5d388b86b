"""Query parameters of /v1/logs and /v1/stats, parsed or refused with the parameter named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from propylon.errors import InvalidRequest
from propylon.observe.logs_query import LogFilter
from propylon.observe.stats import parse_window

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_defaults_cover_the_last_day() -> None:
    parsed = LogFilter.from_params([], now=NOW)
    assert parsed.since == NOW - timedelta(days=1)
    assert parsed.limit == 50 and parsed.metadata is None


def test_filters_are_parsed() -> None:
    parsed = LogFilter.from_params(
        [
            ("since", "2026-01-01T00:00:00"),
            ("until", "1767225600"),
            ("status", "4xx"),
            ("model", "gpt"),
            ("metadata.prompt_version", "v2"),
            ("metadata", '{"team": "search"}'),
            ("before", "99"),
            ("limit", "10"),
        ],
        now=NOW,
    )
    assert parsed.since == datetime(2026, 1, 1, tzinfo=UTC)
    assert parsed.until == datetime(2026, 1, 1, tzinfo=UTC)
    assert parsed.status_class == 4 and parsed.status is None
    assert parsed.metadata == {"prompt_version": "v2", "team": "search"}
    assert (parsed.before_id, parsed.limit, parsed.model) == (99, 10, "gpt")


@pytest.mark.parametrize(
    ("status", "expected"),
    [("503", (503, None, None)), ("error", (None, None, True)), ("ok", (None, None, False))],
)
def test_status_forms(status: str, expected: tuple[object, ...]) -> None:
    parsed = LogFilter.from_params([("status", status)], now=NOW)
    assert (parsed.status, parsed.status_class, parsed.failed) == expected


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ([("limit", "501")], "limit"),
        ([("status", "999")], "status"),
        ([("before", "x")], "before"),
        ([("until", "soon")], "until"),
        ([("metadata", "1")], "metadata"),
        ([("origin", "robots")], "origin"),
        ([("limit", "²")], "limit"),
        ([("since", "100000000000000000000")], "since"),
        ([("before", "99999999999999999999999")], "before"),
    ],
)
def test_bad_filters_name_their_parameter(params: list[tuple[str, str]], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        LogFilter.from_params(params, now=NOW)
    assert refused.value.param == param


def test_windows() -> None:
    assert parse_window(None) == timedelta(hours=1)
    assert parse_window("15m") == timedelta(minutes=15)
    assert parse_window("7d") == timedelta(days=7)
    for bad in ("1w", "0s", "32d", "-1h", "²h", "99999999999d"):
        with pytest.raises(InvalidRequest):
            parse_window(bad)


def test_explorer_filters_are_parsed() -> None:
    parsed = LogFilter.from_params(
        [
            ("guard", "flag"),
            ("cache_status", "hit-semantic"),
            ("key_prefix", "ppl_ab"),
            ("q", "  refund policy "),
        ],
        now=NOW,
    )
    assert (parsed.guard, parsed.cache_status) == ("flag", "hit-semantic")
    assert (parsed.key_prefix, parsed.text) == ("ppl_ab", "refund policy")
    assert LogFilter.from_params([("q", "   ")], now=NOW).text is None


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ([("guard", "maybe")], "guard"),
        ([("cache_status", "garbage")], "cache_status"),
        ([("q", "x" * 201)], "q"),
    ],
)
def test_bad_explorer_filters_name_their_parameter(
    params: list[tuple[str, str]], param: str
) -> None:
    with pytest.raises(InvalidRequest) as refused:
        LogFilter.from_params(params, now=NOW)
    assert refused.value.param == param
