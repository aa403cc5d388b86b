"""A ``ChatStream`` of given chunks, for the unit tests of stream translators."""

from __future__ import annotations

from collections.abc import AsyncIterator

from propylon.errors import UpstreamStreamInterrupted
from propylon.gateway.protocol import JSONObject


class ChunkStream:
    """Yields ``chunks``, then breaks with ``UpstreamStreamInterrupted("cut")`` if ``fail``;
    ``closed`` tells whether the translator closed it."""

    def __init__(self, chunks: list[JSONObject], fail: bool = False) -> None:
        self._chunks, self._fail, self.closed = chunks, fail, False

    def __aiter__(self) -> AsyncIterator[JSONObject]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[JSONObject]:
        for chunk in self._chunks:
            yield chunk
        if self._fail:
            raise UpstreamStreamInterrupted("cut")

    async def aclose(self) -> None:
        self.closed = True
