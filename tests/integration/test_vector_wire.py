"""pgvector's wire forms (``db/vectors.py``) on a real PostgreSQL + pgvector: a vector written
as text and read back with ``vector_send`` is the same float32s, exactly, and a form that is
not pgvector's is refused with a clear error."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from propylon.db import vectors
from propylon.db.database import Database

EDGES = np.asarray([0.37660363, -0.00012345, 0.0, 1e-12, -0.25, 3e38, -1e-38], dtype=np.float32)


async def round_trip(database: Database, values: NDArray[np.floating]) -> NDArray[np.float32]:
    async with database.autocommit() as conn:
        cursor = await conn.execute(
            "SELECT vector_send(%(v)s::vector) AS b", {"v": vectors.literal(values)}
        )
        row = await cursor.fetchone()
    assert row is not None
    return vectors.from_binary(row["b"])


async def test_a_vector_comes_back_from_postgresql_as_the_same_float32s(
    database: Database,
) -> None:
    rng = np.random.default_rng(7)
    for values in (
        EDGES,
        EDGES[::2],  # not contiguous
        np.zeros(3, dtype=np.float32),
        rng.standard_normal(256).astype(np.float32),
        rng.standard_normal(384).astype(np.float32) * 1e-3,
    ):
        back = await round_trip(database, values)
        assert back.dtype == np.float32 and np.array_equal(back, values)
    as_floats = [0.1, -2.5, 1 / 3]  # a list of Python floats: rounded to float32 as pgvector does
    back = await round_trip(database, np.asarray(as_floats))
    assert np.array_equal(back, np.asarray(as_floats, dtype=np.float32))


async def test_a_read_vector_is_writable_and_owns_its_memory(database: Database) -> None:
    back = await round_trip(database, EDGES)
    back[0] = 1.0  # not a view of the bytes psycopg returned
    assert back[0] == 1.0


def test_bytes_that_are_not_pgvectors_binary_form_are_refused() -> None:
    with pytest.raises(ValueError, match="not pgvector's binary form"):
        vectors.from_binary(b"\x00")
    with pytest.raises(ValueError, match="3 dimensions, but 8 bytes"):
        vectors.from_binary(b"\x00\x03\x00\x00\x00\x00\x00\x00")
