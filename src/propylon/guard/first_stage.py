"""The guard's first stage: the user head on the static embedding, MiniLM only where it is unsure.

A window of user input is scored first by a logistic head over [static vector
(``local/static.py``), the same lexical features as the full classifier]: tens of
microseconds. Where that probability falls inside the uncertainty ``band`` (chosen on dev
texts by ``first_stage_training.py``), the window is embedded by MiniLM and scored by the full
classifier as before; outside it, the static probability is the window's score, put on the
full classifier's scale by the piecewise-linear map through both heads' flag and block
thresholds, so the detector's thresholds mean the same whichever head scored a window.

The head ships in ``weights/first_stage.npz`` (``propylon guard train-first-stage``). Its
band was chosen against the full head trained by the same code on the same split: after
retraining the full classifier, retrain this too.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib.resources import files
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from propylon.guard.classifier import Head
from propylon.guard.features import FEATURE_VERSION, LEXICAL_SIZE

Floats = NDArray[np.float32]


class StaticVectors(Protocol):
    """What the first stage needs of ``local.static.StaticEmbedder``."""

    dimensions: int
    weights_sha256: str

    def embed_sync(self, texts: list[str]) -> Floats: ...


class FirstStageMismatch(RuntimeError):
    """The first stage's weights do not fit this code or this static table."""


@dataclass(frozen=True, slots=True)
class Band:
    """Static probabilities in ``[low, high)`` are deferred to the full classifier."""

    low: float
    high: float

    def deferred(self, probability: Floats) -> NDArray[np.bool_]:
        out: NDArray[np.bool_] = (probability >= self.low) & (probability < self.high)
        return out


@dataclass(frozen=True, slots=True)
class FirstStageHead:
    """The static user head, its own thresholds, and the band where it defers."""

    head: Head
    thresholds: dict[str, float]  # the static head's flag / block, chosen on dev texts
    band: Band
    metadata: dict[str, Any]

    @property
    def embedding_size(self) -> int:
        return int(self.head.weights.shape[0]) - LEXICAL_SIZE

    def probability(self, vectors: Floats, lexical: Floats) -> Floats:
        return self.head.probability(np.hstack([vectors, lexical]))

    def on_full_scale(self, probability: Floats, full: dict[str, float]) -> Floats:
        """Static probabilities mapped so that the static flag / block thresholds land on the
        full classifier's (``full``), monotone and piecewise linear in between."""
        flag, block = (
            self.thresholds["flag"],
            max(self.thresholds["block"], self.thresholds["flag"] + 1e-6),
        )
        x = [0.0, flag, block, 1.0]
        y = [0.0, full["flag"], max(full["block"], full["flag"]), 1.0]
        out: Floats = np.interp(probability, x, y).astype(np.float32)
        return out

    def save(self, path: Path) -> None:
        metadata = {
            **self.metadata,
            "feature_version": FEATURE_VERSION,
            "thresholds": self.thresholds,
            "band": {"low": self.band.low, "high": self.band.high},
        }
        buffer = BytesIO()
        np.savez_compressed(
            buffer,
            metadata=np.array(json.dumps(metadata, sort_keys=True)),
            weights=self.head.weights.astype(np.float32),
            bias=np.array(self.head.bias, dtype=np.float32),
        )
        path.write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path | None = None, *, static_sha256: str | None = None) -> FirstStageHead:
        """The shipped head (or the one at ``path``); refused when it was trained on other
        features or, given ``static_sha256``, on another static table."""
        raw = (
            path.read_bytes()
            if path is not None
            else (files("propylon.guard") / "weights" / "first_stage.npz").read_bytes()
        )
        with np.load(BytesIO(raw), allow_pickle=False) as npz:
            metadata: dict[str, Any] = json.loads(str(npz["metadata"]))
            head = Head(npz["weights"].astype(np.float32), float(npz["bias"]))
        if metadata.get("feature_version") != FEATURE_VERSION:
            raise FirstStageMismatch(
                f"first-stage weights use feature version {metadata.get('feature_version')}, "
                f"this code computes {FEATURE_VERSION}: run `propylon guard train-first-stage`"
            )
        if static_sha256 is not None and metadata.get("static_sha256") != static_sha256:
            raise FirstStageMismatch(
                "first-stage weights were trained on another static table: run "
                "`propylon guard train-first-stage`"
            )
        band = Band(float(metadata["band"]["low"]), float(metadata["band"]["high"]))
        thresholds = {k: float(v) for k, v in metadata["thresholds"].items()}
        return cls(head, thresholds, band, metadata)


FullScores = Callable[[NDArray[np.int64]], Awaitable[Floats]]


class FirstStage:
    """The static head in front of the full classifier, for user input."""

    def __init__(self, static: StaticVectors, head: FirstStageHead) -> None:
        if static.dimensions != head.embedding_size:
            raise FirstStageMismatch(
                f"first-stage head reads {head.embedding_size} dimensions, the static table "
                f"has {static.dimensions}"
            )
        self._static = static
        self.head = head
        self.deferred = 0  # windows sent to the full classifier
        self.decided = 0  # windows the static head scored alone

    async def scores(
        self, texts: list[str], lexical: Floats, full: dict[str, float], full_scores: FullScores
    ) -> Floats:
        """Each window's score on the full classifier's scale: the static head's where it is
        sure, ``full_scores(indexes)`` (MiniLM) inside the band."""
        probability = self.head.probability(self._static.embed_sync(texts), lexical)
        out = self.head.on_full_scale(probability, full)
        deferred = np.flatnonzero(self.head.band.deferred(probability))
        self.deferred += len(deferred)
        self.decided += len(texts) - len(deferred)
        if len(deferred):
            out[deferred] = await full_scores(deferred)
        return out
