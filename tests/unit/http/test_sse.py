"""A chat stream that breaks after its first chunk ends with an error event, never cut."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from propylon.errors import UpstreamStreamInterrupted
from propylon.gateway.protocol import JSONObject
from propylon.http.sse import DONE, sse_body


class Breaking:
    """One chunk, then ``error``; records that it was closed."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.closed = False

    def __aiter__(self) -> AsyncIterator[JSONObject]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[JSONObject]:
        yield {"choices": [{"index": 0, "delta": {"content": "Hel"}}]}
        raise self.error

    async def aclose(self) -> None:
        self.closed = True


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (UpstreamStreamInterrupted("upstream went away"), "upstream went away"),
        (RuntimeError("a bug, with a secret sk-abc in it"), "failed to finish this stream"),
    ],
)
async def test_a_broken_stream_ends_with_an_error_event_and_no_done(
    error: Exception, message: str
) -> None:
    stream = Breaking(error)
    events = [part async for part in sse_body(stream)]
    assert DONE not in events
    last = orjson.loads(events[-1].removeprefix(b"data: "))
    assert message in last["error"]["message"]
    assert b"sk-abc" not in b"".join(events)
    assert stream.closed
