"""``settle_heap``: start-up's objects leave the collector's generations, so a full collection
no longer walks them."""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator

import pytest

from propylon.local.memory import settle_heap


@pytest.fixture
def unfreeze() -> Iterator[None]:
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


def full_collection_ms() -> float:
    started = time.perf_counter()
    gc.collect()
    return (time.perf_counter() - started) * 1000.0


@pytest.mark.usefixtures("unfreeze")
def test_after_settling_a_full_collection_skips_what_was_alive() -> None:
    kept = [{"n": n, "items": [n, str(n)]} for n in range(200_000)]  # a long-lived heap
    before = min(full_collection_ms() for _ in range(3))
    frozen = settle_heap()
    after = min(full_collection_ms() for _ in range(3))
    assert frozen >= len(kept)
    # Frozen objects can still die by reference counting (an earlier test's leftovers).
    assert len(kept) <= gc.get_freeze_count() <= frozen
    assert after < before / 3, (before, after)
    # Objects made afterwards are collected as usual.
    cycle: list[object] = []
    cycle.append(cycle)
    del cycle
    assert gc.collect() >= 1
