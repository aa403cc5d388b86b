"""Timeouts translated once, at the edge, saying whether the request had reached the upstream."""

from __future__ import annotations

import aiohttp
import pytest

from propylon.errors import UpstreamTimeout
from propylon.gateway.providers.transport import translate_transport_errors


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
