"""The exact cache: answers stored under the request's full hash.

``ExactCache`` is the seam. ``MemoryExactCache`` (an LRU in this process) serves a single
node; ``RedisExactCache`` (``exact_redis.py``) is shared by replicas, so a purge reaches all
of them. Contract: ``get`` and ``put`` never raise; a failing backend is a miss, logged and
counted by the implementation.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import orjson

from propylon.gateway.cache.key import CacheKey
from propylon.gateway.protocol import JSONObject

Clock = Callable[[], float]


class ExactCache(Protocol):
    async def get(self, key: CacheKey) -> JSONObject | None: ...

    async def put(self, key: CacheKey, response: JSONObject, ttl_s: int) -> None: ...

    async def purge(self, *, tenant_id: str | None = None, model: str | None = None) -> int:
        """Delete the entries of a tenant, of a model, of both, or (neither) all; count them."""
        ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class _Entry:
    tenant_id: str
    model: str
    response: bytes  # serialized: callers may mutate what they get
    expires_at: float


class MemoryExactCache:
    """A bounded LRU with a TTL per entry, in this process."""

    def __init__(self, max_entries: int, *, clock: Clock = time.monotonic) -> None:
        self._max = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: CacheKey) -> JSONObject | None:
        entry = self._entries.get(key.exact)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            del self._entries[key.exact]
            return None
        self._entries.move_to_end(key.exact)
        value: JSONObject = orjson.loads(entry.response)
        return value

    async def put(self, key: CacheKey, response: JSONObject, ttl_s: int) -> None:
        self._entries[key.exact] = _Entry(
            key.tenant_id, key.model, orjson.dumps(response), self._clock() + ttl_s
        )
        self._entries.move_to_end(key.exact)
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def purge(self, *, tenant_id: str | None = None, model: str | None = None) -> int:
        doomed = [
            k
            for k, e in self._entries.items()
            if (tenant_id is None or e.tenant_id == tenant_id)
            and (model is None or e.model == model)
        ]
        for k in doomed:
            del self._entries[k]
        return len(doomed)

    async def aclose(self) -> None:
        self._entries.clear()
