"""Deterministic embeddings: unit vectors built from hashes of a text's words.

Each lower-cased word hashes to a fixed random direction and a text is the normalised sum
of its words' directions. So the same text always gets the same vector, texts sharing
words are close (cosine grows with the overlap), and unrelated texts are nearly
orthogonal, which is what semantic-cache and retrieval tests need. Word order is ignored.
"""

from __future__ import annotations

import base64
import hashlib
import re
from functools import lru_cache

import numpy as np
import numpy.typing as npt

_WORD = re.compile(r"\w+")


def embed(text: str, dimensions: int) -> npt.NDArray[np.float32]:
    """A unit float32 vector of ``dimensions`` for ``text``."""
    words = _WORD.findall(text.lower()) or [text]
    total = np.zeros(dimensions, dtype=np.float64)
    for word in words:
        total += _direction(word, dimensions)
    vector: npt.NDArray[np.float32] = (total / np.linalg.norm(total)).astype(np.float32)
    return vector


def as_floats(vector: npt.NDArray[np.float32]) -> list[float]:
    """The vector as JSON numbers that read back to exactly the same float32 values."""
    floats: list[float] = vector.tolist()
    return floats


def as_base64(vector: npt.NDArray[np.float32]) -> str:
    """The vector as OpenAI's ``encoding_format: base64``: little-endian float32 bytes."""
    return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")


@lru_cache(maxsize=65_536)
def _direction(word: str, dimensions: int) -> npt.NDArray[np.float64]:
    raw = hashlib.shake_256(word.encode()).digest(4 * dimensions)
    uniform = np.frombuffer(raw, dtype="<u4").astype(np.float64) / 2.0**32
    direction: npt.NDArray[np.float64] = uniform * 2.0 - 1.0
    direction.setflags(write=False)
    return direction
