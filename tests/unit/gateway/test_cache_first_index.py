"""The first-stage index's bookkeeping, on scripted rows: ids committed out of order are
asked for again (gaps), expired entries are skipped, a large scope searches the database."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np

from propylon.gateway.cache.first_index import FirstIndex, _Scope
from propylon.gateway.cache.key import cache_key

KEY = cache_key(
    {"model": "m", "messages": [{"role": "user", "content": "q"}]}, tenant_id="t", model="m"
)


class Rows:
    """A database whose refresh statement answers the rows of ``table`` it asks for."""

    def __init__(self) -> None:
        self.table: dict[int, dict[str, Any]] = {}
        self.asked: list[dict[str, Any]] = []

    def add(self, entry_id: int, vector: list[float], expires: float = 1e12) -> None:
        binary = struct.pack(f">HH{len(vector)}f", len(vector), 0, *vector)  # vector_send
        self.table[entry_id] = {
            "id": entry_id,
            "tenant_id": KEY.tenant_id,
            "model": KEY.model,
            "scope": KEY.scope,
            "question": f"q{entry_id}",
            "first_vector": binary,
            "expires_at": expires,
        }

    @asynccontextmanager
    async def autocommit(self, timeout: float | None = None) -> AsyncIterator[Any]:
        yield self

    async def execute(self, query: Any, params: dict[str, Any]) -> Any:
        self.asked.append(params)
        ids = sorted(i for i in self.table if i > params["after"] or i in set(params["gaps"]))[
            : params["limit"]
        ]
        rows = [self.table[i] for i in ids]

        class Cursor:
            async def fetchall(self) -> list[Any]:
                return rows

        return Cursor()


def index(rows: Rows, **options: Any) -> tuple[FirstIndex, list[float]]:
    now = [0.0]
    made = FirstIndex(
        rows,
        embedder="e",
        first_model="s",
        monotonic=lambda: now[0],
        clock=lambda: 100.0,
        **options,
    )
    return made, now


async def ids(found: FirstIndex, vector: list[float]) -> list[int]:
    assert await found.loaded()
    near = await found.nearest(KEY, np.asarray(vector, dtype=np.float32), 8)
    assert near is not None
    return [i for i, _, _ in near]


async def test_the_first_lookup_starts_the_full_read_and_does_not_wait_for_it() -> None:
    rows = Rows()
    rows.add(1, [1.0, 0.0])
    found, _ = index(rows)
    assert await found.nearest(KEY, np.asarray([1.0, 0.0], dtype=np.float32), 8) is None
    assert await found.loaded()
    assert await ids(found, [1.0, 0.0]) == [1]
    assert len(rows.asked) == 1, "one full read"


async def test_an_id_committed_after_a_higher_one_is_asked_for_again_and_found() -> None:
    rows = Rows()
    rows.add(1, [1.0, 0.0])
    rows.add(3, [0.0, 1.0])  # 2 is in flight: handed out, not committed yet
    found, now = index(rows, refresh_s=1.0)
    assert await ids(found, [1.0, 0.0]) == [1, 3]
    rows.add(2, [1.0, 0.1])
    now[0] += 1.0
    assert await ids(found, [1.0, 0.0]) == [1, 2, 3]
    assert rows.asked[-1]["gaps"] == [2] and rows.asked[-1]["after"] == 3


async def test_expired_entries_are_skipped_and_nearest_come_first() -> None:
    rows = Rows()
    rows.add(1, [1.0, 0.0], expires=50.0)  # the clock says 100
    rows.add(2, [0.6, 0.8])
    rows.add(3, [0.9, 0.1])
    found, _ = index(rows)
    assert await ids(found, [1.0, 0.0]) == [3, 2]


def test_a_row_is_skipped_from_its_expiry_whatever_order_rows_came_in() -> None:
    scope = _Scope(2)
    for entry_id, expires in ((1, 300.0), (2, 150.0), (3, 200.0)):
        scope.add(entry_id, f"q{entry_id}", np.asarray([1.0, 0.1 * entry_id], np.float32), expires)
    query = np.asarray([1.0, 0.0], dtype=np.float32)

    def nearest(now: float) -> list[int]:
        return [i for i, _, _ in scope.nearest(query, 8, now)]

    assert nearest(100.0) == [1, 2, 3]
    assert nearest(160.0) == [1, 3], "the second row added expired first"
    assert scope.keep(lambda row: scope.expires[row] > 160.0) == 1
    assert nearest(160.0) == [1, 3]
    assert nearest(250.0) == [1]
    assert nearest(300.0) == []


async def test_a_scope_over_its_size_is_searched_by_the_database() -> None:
    rows = Rows()
    for i in range(1, 4):
        rows.add(i, [1.0, float(i)])
    found, _ = index(rows, max_scope=2)
    assert await found.nearest(KEY, np.asarray([1.0, 0.0], dtype=np.float32), 8) is None
    assert await found.loaded(), "not loaded: the database searched; loaded: still, too large"
    assert await found.nearest(KEY, np.asarray([1.0, 0.0], dtype=np.float32), 8) is None


async def test_an_entry_this_replica_wrote_is_in_at_once_and_not_added_twice() -> None:
    rows = Rows()
    rows.add(1, [1.0, 0.0])
    found, now = index(rows, refresh_s=1.0)
    assert await ids(found, [1.0, 0.0]) == [1]
    scope = (KEY.tenant_id, KEY.model, KEY.scope)
    found.added(2, scope, "q2", np.asarray([0.9, 0.1], dtype=np.float32), ttl_s=60)
    assert await ids(found, [1.0, 0.0]) == [1, 2], "before any refresh"
    rows.add(2, [0.9, 0.1])
    now[0] += 1.0
    assert await ids(found, [1.0, 0.0]) == [1, 2]
    assert found.entries == 2


SCOPE = (KEY.tenant_id, KEY.model, KEY.scope)
QUEUED = np.asarray([0.9, 0.1], dtype=np.float32)


async def one_written_one_queued(rows: Rows) -> tuple[FirstIndex, list[float], int]:
    """An index holding entry 1 (written) and "q2" (queued); its clock; q2's provisional id."""
    rows.add(1, [1.0, 0.0])
    found, now = index(rows, refresh_s=1.0)
    assert await ids(found, [1.0, 0.0]) == [1]
    provisional = found.queued(SCOPE, "q2", QUEUED, ttl_s=60)
    assert provisional is not None and provisional < 0
    return found, now, provisional


async def test_a_queued_entry_is_in_at_once_and_renamed_when_written() -> None:
    rows = Rows()
    found, now, provisional = await one_written_one_queued(rows)
    assert await ids(found, [1.0, 0.0]) == [1, provisional], "searchable before its write"
    found.added(2, SCOPE, "q2", QUEUED, ttl_s=60, provisional=provisional)
    assert await ids(found, [1.0, 0.0]) == [1, 2]
    rows.add(2, [0.9, 0.1])
    now[0] += 1.0
    assert await ids(found, [1.0, 0.0]) == [1, 2], "the refresh does not add it again"
    assert found.entries == 2


async def test_a_queued_entry_is_renamed_after_other_rows_left_the_index() -> None:
    rows = Rows()
    found, _, provisional = await one_written_one_queued(rows)
    found.forget([1])  # its row read gone: the rows after it move up
    found.added(2, SCOPE, "q2", QUEUED, ttl_s=60, provisional=provisional)
    assert await ids(found, [1.0, 0.0]) == [2]
    assert found.entries == 1


async def test_a_queued_entry_read_by_a_refresh_first_is_not_in_twice() -> None:
    rows = Rows()
    found, now, provisional = await one_written_one_queued(rows)
    rows.add(2, [0.9, 0.1])  # committed, and read by a refresh before the write reports it
    now[0] += 1.0
    assert sorted(await ids(found, [1.0, 0.0])) == sorted([1, 2, provisional])
    found.added(2, SCOPE, "q2", QUEUED, ttl_s=60, provisional=provisional)
    assert await ids(found, [1.0, 0.0]) == [1, 2]
    assert found.entries == 2


async def test_a_queued_entry_that_is_never_written_leaves_the_index() -> None:
    rows = Rows()
    found, _ = index(rows)
    assert await found.loaded()
    provisional = found.queued(SCOPE, "q", np.asarray([1.0, 0.0], dtype=np.float32), ttl_s=60)
    assert provisional is not None
    assert await ids(found, [1.0, 0.0]) == [provisional]
    found.unqueued(provisional)
    assert await ids(found, [1.0, 0.0]) == []
    assert found.entries == 0


async def test_before_the_first_full_read_a_queued_entry_stays_out_of_the_index() -> None:
    found, _ = index(Rows())
    assert found.queued(SCOPE, "q", np.asarray([1.0, 0.0], dtype=np.float32), ttl_s=60) is None


def test_a_floor_keeps_the_nearest_rows_at_it_and_no_others() -> None:
    rng = np.random.default_rng(7)
    scope = _Scope(16)
    for entry_id in range(1, 401):
        scope.add(entry_id, f"q{entry_id}", rng.normal(size=16).astype(np.float32), 1e12)
    for _ in range(20):
        query = rng.normal(size=16).astype(np.float32)
        query /= np.linalg.norm(query)
        every = scope.nearest(query, 400, 0.0)
        for floor in (0.3, 0.5, 0.7, 0.99):
            at_floor = [f for f in every if f[2] >= floor]
            assert scope.nearest(query, 8, 0.0, floor) == at_floor[:8]
    assert scope.nearest(query, 8, 1e13, 0.3) == [], "expired rows are below any floor"
