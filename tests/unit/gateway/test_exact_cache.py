"""The in-process exact cache: TTL, LRU bound, purge by tenant or model."""

from __future__ import annotations

from propylon.gateway.cache.exact import MemoryExactCache
from propylon.gateway.cache.key import CacheKey


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def key(name: str, tenant: str = "t", model: str = "m") -> CacheKey:
    return CacheKey(tenant, model, name, name, None)


async def test_an_entry_expires_after_its_ttl() -> None:
    clock = Clock()
    cache = MemoryExactCache(10, clock=clock)
    await cache.put(key("a"), {"v": 1}, ttl_s=30)
    clock.now = 29.9
    assert await cache.get(key("a")) == {"v": 1}
    clock.now = 30.0
    assert await cache.get(key("a")) is None


async def test_the_least_recently_used_entry_goes_first() -> None:
    cache = MemoryExactCache(2)
    await cache.put(key("a"), {"v": "a"}, 60)
    await cache.put(key("b"), {"v": "b"}, 60)
    await cache.get(key("a"))
    await cache.put(key("c"), {"v": "c"}, 60)
    assert await cache.get(key("b")) is None
    assert await cache.get(key("a")) == {"v": "a"}


async def test_callers_cannot_mutate_a_cached_answer() -> None:
    cache = MemoryExactCache(2)
    await cache.put(key("a"), {"v": [1]}, 60)
    got = await cache.get(key("a"))
    assert got is not None
    got["v"].append(2)
    assert await cache.get(key("a")) == {"v": [1]}


async def test_purge_by_tenant_or_model() -> None:
    cache = MemoryExactCache(10)
    await cache.put(key("1", "t1", "m1"), {}, 60)
    await cache.put(key("2", "t1", "m2"), {}, 60)
    await cache.put(key("3", "t2", "m1"), {}, 60)
    assert await cache.purge(tenant_id="t1") == 2
    assert await cache.purge(model="m1") == 1
    assert len(cache) == 0
