"""The offline injection classifier: logistic regression over MiniLM embeddings + lexical features.

Inference is one dot product per window in numpy. There are two heads with their own weights,
one for user input and one for retrieved text, because the same words mean different things
in each place: "Translate this sentence to French" is a normal request from a user and an
injection when it sits inside an email the model was asked to summarise.

The weights ship in ``propylon/guard/weights/classifier.npz`` and are reproduced by
``propylon guard train`` (see ``training.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from propylon.guard import addressed
from propylon.guard.features import FEATURE_VERSION, LEXICAL_SIZE

SOURCES = ("user", "retrieved")
EMBEDDING_SIZE = 384
FEATURE_SIZE = EMBEDDING_SIZE + LEXICAL_SIZE
# The retrieved head also reads whether a window speaks to the model (``addressed.py``),
# columns after the shared lexical ones.
HEAD_SIZE = {"user": FEATURE_SIZE, "retrieved": FEATURE_SIZE + addressed.SIZE}

Matrix = NDArray[np.float32]


class WeightsMismatch(RuntimeError):
    """The weights file was trained on other features than this code computes."""


@dataclass(frozen=True, slots=True)
class Head:
    """One logistic regression: ``sigmoid(x · weights + bias)``."""

    weights: NDArray[np.float32]
    bias: float

    def probability(self, features: Matrix) -> NDArray[np.float32]:
        logits = features @ self.weights + np.float32(self.bias)
        out: NDArray[np.float32] = (1.0 / (1.0 + np.exp(-np.clip(logits, -30, 30)))).astype(
            np.float32
        )
        return out


@dataclass(frozen=True, slots=True)
class InjectionClassifier:
    heads: dict[str, Head]
    metadata: dict[str, Any]

    @classmethod
    def load(
        cls, path: Path | None = None, sources: tuple[str, ...] = SOURCES
    ) -> InjectionClassifier:
        """The shipped weights, or those at ``path``: the heads of ``sources`` (``("user",)``
        keeps the user head of weights whose retrieved head this code no longer reads, for
        ``propylon guard train --retrieved-only``)."""
        raw = (
            path.read_bytes()
            if path is not None
            else (files("propylon.guard") / "weights" / "classifier.npz").read_bytes()
        )
        with np.load(BytesIO(raw), allow_pickle=False) as npz:
            metadata: dict[str, Any] = json.loads(str(npz["metadata"]))
            if metadata.get("feature_version") != FEATURE_VERSION:
                raise WeightsMismatch(
                    f"weights use feature version {metadata.get('feature_version')}, this code "
                    f"computes {FEATURE_VERSION}: run `propylon guard train`"
                )
            heads = {
                source: Head(
                    npz[f"{source}_weights"].astype(np.float32), float(npz[f"{source}_bias"])
                )
                for source in sources
            }
        stale = metadata.get("addressed_version", addressed.VERSION) != addressed.VERSION
        if "retrieved" in sources and stale:
            raise WeightsMismatch(
                f"the retrieved head uses addressed-features version "
                f"{metadata.get('addressed_version')}, this code computes {addressed.VERSION}: "
                "run `propylon guard train --retrieved-only`"
            )
        for source, head in heads.items():
            if head.weights.shape != (HEAD_SIZE[source],):
                raise WeightsMismatch(
                    f"expected {HEAD_SIZE[source]} {source} weights, got {head.weights.shape}"
                )
        return cls(heads, metadata)

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {"metadata": np.array(json.dumps(self.metadata, sort_keys=True))}
        for source, head in self.heads.items():
            arrays[f"{source}_weights"] = head.weights.astype(np.float32)
            arrays[f"{source}_bias"] = np.array(head.bias, dtype=np.float32)
        buffer = BytesIO()
        np.savez_compressed(buffer, **arrays)
        path.write_bytes(buffer.getvalue())

    def probability(
        self, embeddings: Matrix, lexical: Matrix, source: str, texts: list[str] | None = None
    ) -> NDArray[np.float32]:
        """P(injection) of each window, from its embedding row and its lexical row (and, for
        the retrieved head, ``addressed.features`` of the windows' ``texts``)."""
        columns = [embeddings, lexical]
        if HEAD_SIZE[source] > FEATURE_SIZE:
            if texts is None:
                raise ValueError(f"the {source} head needs the windows' texts")
            columns.append(addressed.features(texts))
        return self.heads[source].probability(np.hstack(columns))
