"""The semantic cache's first stage: a search by static vector that spares the embedder on a miss.

Most lookups are misses: a new question near nothing cached. Embedding it with MiniLM (about
4 ms of CPU) or a remote embeddings model (a paid round trip) only to learn that is the cost
this stage removes. Each entry also stores the static vector of its question
(``local/static.py``: a tokenizer call and a mean of rows, tens of microseconds); a search
first compares static vectors, and only when one of the nearest passes the loose
``threshold`` does the embedder read the new question and those candidates. The candidates'
embedder vectors are computed then, once, and written to their rows (migration 0023), so
storing an answer never runs the embedder either.

The loose threshold is chosen on dev pairs so that nearly every pair the full path would serve
still reaches it; ``propylon eval cache-first-stage`` reports the hits lost on held-out pair
sources beside the share of lookups that still run the embedder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from propylon.gateway.cache.semantic import Embedding

CANDIDATES = 8  # nearest static vectors read: the embedder's nearest is usually among them


class StaticModel(Protocol):
    """What the first stage needs of ``local.static.StaticEmbedder``."""

    def vector(self, text: str) -> NDArray[np.float32]:
        """The unit static vector of ``text``, computed on the calling thread."""
        ...


@dataclass(frozen=True, slots=True)
class FirstStage:
    """The static model and the cosine of static vectors from which a cached question is
    read by the embedder."""

    model: StaticModel  # computed on the event loop, no worker thread
    model_id: str  # names the static table (rows of another table never compare)
    threshold: float
    candidates: int = CANDIDATES

    async def vector(self, question: str) -> Embedding:
        """The static vector of ``question`` (the guard's, when it read the same text)."""
        return Embedding(self.model.vector(question))
