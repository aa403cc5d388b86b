"""``PreflightChat``: a refusal that costs microseconds runs before a layer that costs
milliseconds.

The request path refuses in order of cost (see ``app.build_services``): the request's shape
and message count (``Gateway.check_request``) first, then keys and rate limits
(``LimitsLayer``), then the context window and the breakers (``Gateway.check_route``), and only
then the guard's classifier, which embeds every message. Each check is the gateway's own, so a
request refused here is refused exactly as the gateway would refuse it later.
"""

from __future__ import annotations

from collections.abc import Callable

from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import ChatService, ChatStream, JSONObject


class PreflightChat:
    """Runs ``check`` on the request (it raises to refuse), then the layer it wraps."""

    def __init__(self, inner: ChatService, check: Callable[[JSONObject], object]) -> None:
        self._inner = inner
        self._check = check

    async def complete(self, request: JSONObject, call: CallInfo | None = None) -> JSONObject:
        self._check(request)
        return await self._inner.complete(request, call)

    async def stream(self, request: JSONObject, call: CallInfo | None = None) -> ChatStream:
        self._check(request)
        return await self._inner.stream(request, call)
