"""The exact cache in Redis, shared by every replica.

Keys are ``<prefix><tenant hash>:<model hash>:<request hash>``, so a purge by tenant or model
is one ``SCAN`` pattern made of hex digits only (nothing to escape). Any Redis failure is a
miss: logged, counted, and Redis is then left alone for ``retry_s`` so a dead or slow server
costs the requests behind it nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import orjson
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from propylon.gateway.cache.exact import Clock
from propylon.gateway.cache.key import CacheKey
from propylon.gateway.cache.stats import CacheStats
from propylon.gateway.protocol import JSONObject

log = logging.getLogger(__name__)
T = TypeVar("T")


class RedisExactCache:
    """``ExactCache`` on Redis; never raises from ``get`` or ``put``."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str,
        timeout_s: float,
        retry_s: float,
        stats: CacheStats,
        clock: Clock = time.monotonic,
    ) -> None:
        self._redis: Redis = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry_on_timeout=False,
            retry=Retry(NoBackoff(), 0),
        )
        self._prefix = prefix
        self._timeout = timeout_s
        self._retry_s = retry_s
        self._stats = stats
        self._clock = clock
        self._down_until = 0.0

    async def get(self, key: CacheKey) -> JSONObject | None:
        raw = await self._guarded("get", lambda: self._redis.get(self._name(key)))
        if not raw:
            return None
        value: JSONObject = orjson.loads(raw)
        return value

    async def put(self, key: CacheKey, response: JSONObject, ttl_s: int) -> None:
        data = orjson.dumps(response)
        await self._guarded("set", lambda: self._redis.set(self._name(key), data, ex=ttl_s))

    async def purge(self, *, tenant_id: str | None = None, model: str | None = None) -> int:
        """Raises on Redis errors: an operator asking for a purge must know it failed."""
        tenant = _hash(tenant_id) if tenant_id is not None else "*"
        name = _hash(model) if model is not None else "*"
        deleted = 0
        batch: list[Any] = []
        async for found in self._redis.scan_iter(match=f"{self._prefix}{tenant}:{name}:*"):
            batch.append(found)
            if len(batch) >= 500:
                deleted += await self._redis.unlink(*batch)
                batch.clear()
        if batch:
            deleted += await self._redis.unlink(*batch)
        return deleted

    async def aclose(self) -> None:
        await self._redis.aclose()

    def _name(self, key: CacheKey) -> str:
        return f"{self._prefix}{_hash(key.tenant_id)}:{_hash(key.model)}:{key.exact}"

    async def _guarded(self, op: str, call: Callable[[], Awaitable[T]]) -> T | None:
        if self._clock() < self._down_until:
            return None
        try:
            return await asyncio.wait_for(call(), self._timeout)
        except Exception as exc:  # the cache never fails a request
            self._down_until = self._clock() + self._retry_s
            self._stats.errors["redis"] += 1
            log.warning("redis cache %s failed; served as a miss", op, extra={"error": repr(exc)})
            return None


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]
