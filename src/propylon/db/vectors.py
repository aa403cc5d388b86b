"""pgvector's wire forms, without a driver: the text a vector is written in, the bytes it is
read back from.

Written as text (``[0.1,0.2]``): psycopg would dump a list of floats in Python (about 330 µs
for 256 values), orjson writes each float32 in its shortest exact decimal in about 5 µs.
Read as bytes (``vector_send(column)`` in the query): parsing the text form back costs about
50 µs for 256 values and PostgreSQL formats each float on the way out; the binary form is
the float32s themselves, about 1 µs. Both give back every float32 exactly.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson
from numpy.typing import NDArray

_HEADER = 4  # vector_send: dimensions (int16), an unused int16, then big-endian float32s
_BIG_ENDIAN = np.dtype(">f4")


def literal(values: NDArray[np.floating] | Sequence[float]) -> str:
    """pgvector's text form of ``values`` as float32: NaN and infinities become ``null``,
    which pgvector refuses as it refuses them."""
    contiguous = np.ascontiguousarray(values, dtype=np.float32)
    return orjson.dumps(contiguous, option=orjson.OPT_SERIALIZE_NUMPY).decode()


def from_binary(data: bytes) -> NDArray[np.float32]:
    """A vector read as ``vector_send(column)``, as a float32 array of its own."""
    if len(data) < _HEADER:
        raise ValueError(f"not pgvector's binary form: {len(data)} bytes")
    dims = int.from_bytes(data[:2], "big")
    if len(data) != _HEADER + 4 * dims:
        raise ValueError(f"pgvector's binary form of {dims} dimensions, but {len(data)} bytes")
    return np.frombuffer(data, dtype=_BIG_ENDIAN, offset=_HEADER).astype(np.float32)
