"""The first-stage index's bookkeeping, on scripted rows: ids committed out of order are
asked for again (gaps), expired entries are skipped, a large scope searches the database."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest

from propylon.gateway.cache.first_index import CATCH_UP, FirstIndex, _Scope, build_graph
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


def unit(rng: np.random.Generator, dims: int = 16) -> list[float]:
    vector = rng.normal(size=dims)
    return [float(x) for x in vector / np.linalg.norm(vector)]


async def loaded_index(
    rng: np.random.Generator, count: int, **options: Any
) -> tuple[FirstIndex, list[float]]:
    """An index over ``count`` random unit rows (ids 1…), its first full read done."""
    rows = Rows()
    for i in range(1, count + 1):
        rows.add(i, unit(rng))
    found, now = index(rows, **options)
    assert await found.loaded()
    return found, now


def scan_of(found: FirstIndex) -> _Scope:
    """A copy of ``KEY``'s scope without a graph: what the exact scan answers."""
    scope = found._scopes[(KEY.tenant_id, KEY.model, KEY.scope)]
    plain = _Scope(scope.dims, graph_from=10**9)
    for row, entry_id in enumerate(scope.ids):
        plain.add(entry_id, scope.questions[row], scope.matrix[row], scope.expires[row])
    return plain


async def test_a_large_scope_is_searched_through_its_graph_with_the_scans_answers() -> None:
    rng = np.random.default_rng(11)
    rows = Rows()
    for i in range(1, 301):
        rows.add(i, unit(rng), expires=50.0 if i % 10 == 0 else 1e12)  # the clock says 100
    found, _ = index(rows, graph_from=100)
    assert await found.loaded()
    await found.graphs_built()
    scope = found._scopes[(KEY.tenant_id, KEY.model, KEY.scope)]
    assert scope.graph is not None and len(scope.graph) == 300
    plain = scan_of(found)
    for _ in range(30):
        query = np.asarray(unit(rng), dtype=np.float32)
        near = await found.nearest(KEY, query, 8, 0.3)
        assert near is not None
        scanned = plain.nearest(query, 8, 100.0, 0.3)
        assert [i for i, _, _ in near] == [i for i, _, _ in scanned]
        # the cosines from the matrix in float32 (summed in another order: the last bit)
        assert [c for _, _, c in near] == pytest.approx([c for _, _, c in scanned], abs=1e-6)
        assert all(entry_id % 10 for entry_id, _, _ in near), "expired rows skipped"


async def test_rows_removed_retire_the_graph_until_a_new_one_is_built() -> None:
    rng = np.random.default_rng(12)
    rows = Rows()
    for i in range(1, 201):
        rows.add(i, unit(rng))
    found, now = index(rows, graph_from=100, refresh_s=1.0)
    assert await found.loaded()
    await found.graphs_built()
    scope = found._scopes[(KEY.tenant_id, KEY.model, KEY.scope)]
    first = scope.matrix[0].copy()
    found.forget([1])
    assert scope.graph is None, "its keys were the old row numbers"
    assert found.sizes() == {"scan": 199, "graph": 0}
    assert 1 not in [i for i, _, _ in await found.nearest(KEY, first, 8) or []]
    rows.add(201, unit(rng))  # the next row added starts a new build
    now[0] += 1.0
    assert await found.nearest(KEY, first, 8) is not None
    await found.graphs_built()
    assert scope.graph is not None and len(scope.graph) == 200
    assert 1 not in [i for i, _, _ in await found.nearest(KEY, first, 8) or []]


def test_a_graph_built_meanwhile_takes_the_new_rows_unless_too_many_came() -> None:
    rng = np.random.default_rng(13)
    scope = _Scope(16, graph_from=10**9)
    for entry_id in range(1, 101):
        scope.add(entry_id, f"q{entry_id}", np.asarray(unit(rng), np.float32), 1e12)
    generation, rows = scope.snapshot()
    for entry_id in range(101, 111):
        scope.add(entry_id, f"q{entry_id}", np.asarray(unit(rng), np.float32), 1e12)
    graph = build_graph(16, rows)
    assert scope.take_graph(generation, graph) and len(graph) == 110
    generation, rows = scope.snapshot()
    scope.graph = None
    for entry_id in range(111, 112 + CATCH_UP):
        scope.add(entry_id, f"q{entry_id}", np.asarray(unit(rng), np.float32), 1e12)
    assert not scope.take_graph(generation, build_graph(16, rows))
    assert scope.graph is None


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


async def test_a_graph_outrun_by_many_rows_adds_them_in_its_thread_and_is_used() -> None:
    rng = np.random.default_rng(14)
    found, _ = await loaded_index(rng, 100, graph_from=100)  # the 100th row started a build
    key = (KEY.tenant_id, KEY.model, KEY.scope)
    for i in range(600):  # under load, rows keep coming while it is built
        found.queued(key, f"new {i}", np.asarray(unit(rng), np.float32), 3600.0)
    await found.graphs_built()
    scope = found._scopes[key]
    assert scope.graph is not None and len(scope.graph) == len(scope) == 700
    assert found.sizes() == {"scan": 0, "graph": 700}
    assert found.graph_builds == {"built": 1, "restarted": 0, "failed": 0}


class RefusingGraph:
    """A graph whose every insert fails (out of memory, say)."""

    def add(self, *args: Any, **kwargs: Any) -> None:
        raise MemoryError("no room")


async def test_a_graph_that_refuses_a_row_is_retired_and_the_scan_finds_the_row() -> None:
    rng = np.random.default_rng(15)
    found, _ = await loaded_index(rng, 100, graph_from=100)
    await found.graphs_built()
    key = (KEY.tenant_id, KEY.model, KEY.scope)
    scope = found._scopes[key]
    scope.graph = RefusingGraph()  # type: ignore[assignment]
    vector = np.asarray(unit(rng), np.float32)
    provisional = found.queued(key, "the new one", vector, 3600.0)
    assert scope.graph is None or not isinstance(scope.graph, RefusingGraph)
    near = await found.nearest(KEY, vector, 8)
    assert near is not None and near[0][0] == provisional
    await found.graphs_built()  # that row's add asked for a new graph: it holds every row
    assert scope.graph is not None and len(scope.graph) == 101
