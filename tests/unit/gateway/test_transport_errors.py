"""Timeouts translated once, at the edge, saying whether the request had reached the upstream."""

from __future__ import annotations

import aiohttp
import pytest

from propylon.errors import UpstreamTimeout
from propylon.gateway.providers.transport import (
    retry_after_seconds,
    translate_transport_errors,
)


async def test_a_connect_timeout_happened_before_anything_was_sent() -> None:
    with pytest.raises(UpstreamTimeout) as caught:
        async with translate_transport_errors("up"):
            raise aiohttp.ConnectionTimeoutError()
    assert not caught.value.after_send
    assert "did not accept a connection" in caught.value.message


@pytest.mark.parametrize("error", [TimeoutError(), aiohttp.SocketTimeoutError()])
async def test_a_read_timeout_happened_after_sending_and_says_what_it_awaited(
    error: Exception,
) -> None:
    with pytest.raises(UpstreamTimeout) as caught:
        async with translate_transport_errors("up", "the answer (600 s response timeout)"):
            raise error
    assert caught.value.after_send
    assert caught.value.message == "up timed out waiting for the answer (600 s response timeout)"


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "3"}, 3.0),
        ({"retry-after-ms": "1500", "Retry-After": "9"}, 1.5),
        ({"Retry-After": "-4"}, 0.0),
        ({"retry-after-ms": "-5"}, 0.0),
        ({"Retry-After": "Wed, 21 Oct 2026 07:28:00 GMT"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "inf"}, None),
        ({"retry-after-ms": "nan", "Retry-After": "2"}, 2.0),
        ({"retry-after-ms": "1e30"}, 86_400.0),
        ({}, None),
    ],
)
def test_an_upstreams_retry_after_is_a_finite_delay_or_no_hint(
    headers: dict[str, str], seconds: float | None
) -> None:
    assert retry_after_seconds(headers) == seconds
