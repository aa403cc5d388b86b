"""Per-request cache control: deterministic by default, opt-in, headers, the extension."""

from __future__ import annotations

from typing import Any

import pytest

from propylon.errors import InvalidRequest
from propylon.gateway.cache.control import cache_directive
from propylon.settings import CacheSettings

SETTINGS = CacheSettings()


def body(**fields: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [], **fields}


@pytest.mark.parametrize(
    ("fields", "cached"),
    [
        ({}, False),
        ({"temperature": 0.7}, False),
        ({"temperature": 0}, True),
        ({"seed": 42, "temperature": 1}, True),
        ({"propylon": {"cache": {"enabled": True}}}, True),
        ({"temperature": 0, "propylon": {"cache": {"enabled": False}}}, False),
    ],
)
def test_only_deterministic_or_opted_in_requests_are_cached(
    fields: dict[str, Any], cached: bool
) -> None:
    assert (not cache_directive(body(**fields), None, SETTINGS).bypass) is cached


def test_cache_control_header_directives() -> None:
    no_cache = cache_directive(body(temperature=0), "no-cache", SETTINGS)
    assert (no_cache.lookup, no_cache.store) == (False, True)
    no_store = cache_directive(body(temperature=0), "No-Store", SETTINGS)
    assert (no_store.lookup, no_store.store) == (True, False)
    assert cache_directive(body(temperature=0), "no-cache, no-store", SETTINGS).bypass


def test_a_requested_ttl_is_capped() -> None:
    settings = CacheSettings(max_ttl_s=60)
    directive = cache_directive(
        body(temperature=0, propylon={"cache": {"ttl": 3600}}), None, settings
    )
    assert directive.ttl_s == 60


def test_a_disabled_cache_bypasses_everything() -> None:
    assert cache_directive(body(temperature=0), None, CacheSettings(enabled=False)).bypass


def test_a_malformed_extension_names_the_field() -> None:
    with pytest.raises(InvalidRequest) as caught:
        cache_directive(body(propylon={"cache": {"enabled": "yes"}}), None, SETTINGS)
    assert caught.value.param == "propylon.cache.enabled"
