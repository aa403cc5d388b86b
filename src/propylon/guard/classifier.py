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

from propylon.guard.features import FEATURE_VERSION, LEXICAL_SIZE

SOURCES = ("user", "retrieved")
EMBEDDING_SIZE = 384
FEATURE_SIZE = EMBEDDING_SIZE + LEXICAL_SIZE

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
    def load(cls, path: Path | None = None) -> InjectionClassifier:
        """The shipped weights, or those at ``path``."""
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
                for source in SOURCES
            }
        for head in heads.values():
            if head.weights.shape != (FEATURE_SIZE,):
                raise WeightsMismatch(f"expected {FEATURE_SIZE} weights, got {head.weights.shape}")
        return cls(heads, metadata)

    def save(self, path: Path) -> None:
        arrays: dict[str, Any] = {"metadata": np.array(json.dumps(self.metadata, sort_keys=True))}
        for source, head in self.heads.items():
            arrays[f"{source}_weights"] = head.weights.astype(np.float32)
            arrays[f"{source}_bias"] = np.array(head.bias, dtype=np.float32)
        buffer = BytesIO()
        np.savez_compressed(buffer, **arrays)
        path.write_bytes(buffer.getvalue())

    def probability(self, embeddings: Matrix, lexical: Matrix, source: str) -> NDArray[np.float32]:
        """P(injection) of each window, from its embedding row and its lexical row."""
        return self.heads[source].probability(np.hstack([embeddings, lexical]))
