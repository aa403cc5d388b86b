"""The guard's first stage: the user head on the static embedding, MiniLM only where it is unsure.

A window of user input is scored first by a logistic head over [static vector
(``local/static.py``), the same lexical features as the full classifier]: tens of
microseconds. Where that probability falls inside the ``band`` of the length of the message
the window belongs to (chosen on dev texts by ``first_stage_training.py``; the shipped band is
one-sided, ``[low, 1]``, so everything not clearly benign goes on), the window is embedded by
MiniLM and scored by the full classifier as before; below it, the static probability is the
window's score, put on the full classifier's scale by the piecewise-linear map through both
heads' flag and block thresholds of that length, so the detector's thresholds mean the same
whichever head scored a window.

The head ships in ``weights/first_stage.npz``, written by ``propylon guard
train-first-stage``, which chooses the band against the shipped full head and records that
head's fingerprint (``head_digest``): after retraining the full classifier, run it again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib.resources import files
from io import BytesIO
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from numpy.typing import NDArray

from propylon.guard.classifier import Head
from propylon.guard.features import FEATURE_VERSION, LEXICAL_SIZE

Floats = NDArray[np.float32]
Floats64 = NDArray[np.float64]


class StaticVectors(Protocol):
    """What the first stage needs of ``local.static.StaticEmbedder``."""

    dimensions: int
    weights_sha256: str

    def embed_sync(self, texts: list[str]) -> Floats: ...


class FirstStageMismatch(RuntimeError):
    """The first stage's weights do not fit this code or this static table."""


Table = dict[str, Any]  # thresholds as training stores them: flag, block, by_length rows


def bucket_of(table: Table, lengths: NDArray[np.int64]) -> NDArray[np.int64]:
    """Each length's row in ``table["by_length"]`` (``[below_chars, …]``, shortest first), or
    the number of rows for lengths beyond the last (the top-level values)."""
    return Columns.of(table).bucket(lengths)


def column(table: Table, name: str) -> Floats:
    """One value of ``table`` per length bucket (``flag`` or ``block``; ``low`` / ``high`` for
    a band), shortest first, the top-level value last."""
    index = {"flag": 1, "block": 2, "low": 1, "high": 2}[name]
    rows = [float(row[index]) for row in table.get("by_length", [])]
    return np.array([*rows, float(table[name])], dtype=np.float32)


def head_digest(head: Head) -> str:
    """A fingerprint of a full head's weights: the first stage records the one its band was
    chosen against (``first_stage_training.fit_against``)."""
    raw = head.weights.astype(np.float32).tobytes() + np.float32(head.bias).tobytes()
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True, slots=True)
class Columns:
    """``bucket_of`` and ``column`` of one table, computed once."""

    belows: NDArray[np.int64]
    values: tuple[Floats, ...]

    @classmethod
    def of(cls, table: Table, *names: str) -> Columns:
        belows = np.array([row[0] for row in table.get("by_length", [])], dtype=np.int64)
        return cls(belows, tuple(column(table, name) for name in names))

    def bucket(self, lengths: NDArray[np.int64]) -> NDArray[np.int64]:
        out: NDArray[np.int64] = np.searchsorted(self.belows, lengths, side="right").astype(
            np.int64
        )
        return out


@dataclass(frozen=True, slots=True)
class Band:
    """Static probabilities in ``[low, high)`` are deferred to the full classifier; with
    ``by_length`` rows ``(below_chars, low, high)``, a window is judged by the row of the
    length of the text it belongs to (its detector thresholds differ by length too)."""

    low: float
    high: float
    by_length: tuple[tuple[int, float, float], ...] = ()
    _columns: Columns = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:  # read on every user message: made once
        object.__setattr__(self, "_columns", Columns.of(self.table(), "low", "high"))

    def table(self) -> Table:
        return {
            "low": self.low,
            "high": self.high,
            "by_length": [list(row) for row in self.by_length],
        }

    def deferred(
        self, probability: Floats, lengths: NDArray[np.int64] | None = None
    ) -> NDArray[np.bool_]:
        if lengths is None or not self.by_length:
            lengths = np.zeros(len(probability), dtype=np.int64) + 10**12
        bucket = self._columns.bucket(lengths)
        low, high = self._columns.values
        out: NDArray[np.bool_] = (probability >= low[bucket]) & (probability < high[bucket])
        return out

    @classmethod
    def stored(cls, band: Table) -> Band:
        return cls(
            float(band["low"]),
            float(band["high"]),
            tuple((int(r), float(lo), float(hi)) for r, lo, hi in band.get("by_length", [])),
        )


@dataclass(frozen=True, slots=True)
class FirstStageHead:
    """The static user head, its own thresholds, and the band where it defers."""

    head: Head
    thresholds: Table  # the static head's flag / block (by length), chosen on dev texts
    band: Band
    metadata: dict[str, Any]
    # Read on every user message: the static thresholds' columns, made once, and the full
    # classifier's, by table (a detector has one per source).
    _own: Columns = field(init=False, repr=False, compare=False)
    _full: dict[tuple[Any, ...], Columns] = field(init=False, repr=False, compare=False)
    _lines: dict[tuple[Any, ...], tuple[Floats64, Floats64]] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_own", Columns.of(self.thresholds, "flag", "block"))
        object.__setattr__(self, "_full", {})
        object.__setattr__(self, "_lines", {})

    @property
    def embedding_size(self) -> int:
        return int(self.head.weights.shape[0]) - LEXICAL_SIZE

    def probability(self, vectors: Floats, lexical: Floats) -> Floats:
        return self.head.probability(np.hstack([vectors, lexical]))

    def on_full_scale(
        self, probability: Floats, full: Table, lengths: NDArray[np.int64] | None = None
    ) -> Floats:
        """Static probabilities mapped so that the static flag / block thresholds land on the
        full classifier's (``full``), monotone and piecewise linear in between; with
        ``lengths`` (of the text each window belongs to) and thresholds by length, through the
        thresholds of that length on both sides."""
        if lengths is None:
            lengths = np.zeros(len(probability), dtype=np.int64) + 10**12
        out: Floats = np.zeros(len(probability), dtype=np.float32)
        key = (full["flag"], full["block"], tuple(map(tuple, full.get("by_length", []))))
        if (theirs := self._full.get(key)) is None:
            theirs = self._full[key] = Columns.of(full, "flag", "block")
        static_bucket, full_bucket = self._own.bucket(lengths), theirs.bucket(lengths)
        pairs = set(zip(static_bucket.tolist(), full_bucket.tolist(), strict=True))
        if len(pairs) == 1:  # one length bucket (every window of one message): no masks
            x, y = self._line(key, theirs, *pairs.pop())
            out[:] = np.interp(probability, x, y)
            return out
        for sb, fb in pairs:
            rows = (static_bucket == sb) & (full_bucket == fb)
            x, y = self._line(key, theirs, sb, fb)
            out[rows] = np.interp(probability[rows], x, y)
        return out

    def _line(
        self, key: tuple[Any, ...], theirs: Columns, sb: int, fb: int
    ) -> tuple[Floats64, Floats64]:
        """``on_full_scale``'s knots from static bucket ``sb`` to full bucket ``fb``."""
        if (line := self._lines.get((key, sb, fb))) is None:
            (s_flag, s_block), (f_flag, f_block) = self._own.values, theirs.values
            flag, block = float(s_flag[sb]), max(float(s_block[sb]), float(s_flag[sb]) + 1e-6)
            x = np.array([0.0, flag, block, 1.0])
            y = np.array([0.0, float(f_flag[fb]), max(float(f_block[fb]), float(f_flag[fb])), 1.0])
            line = self._lines[(key, sb, fb)] = (x, y)
        return line

    def save(self, path: Path) -> None:
        metadata = {
            **self.metadata,
            "feature_version": FEATURE_VERSION,
            "thresholds": self.thresholds,
            "band": self.band.table(),
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
        return cls(head, metadata["thresholds"], Band.stored(metadata["band"]), metadata)


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
        self,
        texts: list[str],
        lexical: Floats,
        full: Table,
        full_scores: FullScores,
        lengths: NDArray[np.int64] | None = None,
    ) -> Floats:
        """Each window's score on the full classifier's scale: the static head's where it is
        sure, ``full_scores(indexes)`` (MiniLM) inside the band. ``lengths``: the length of the
        text each window belongs to (default: the window's own), which picks the band and the
        thresholds of that length."""
        if lengths is None:
            lengths = np.array([len(t) for t in texts], dtype=np.int64)
        probability = self.head.probability(self._static.embed_sync(texts), lexical)
        out = self.head.on_full_scale(probability, full, lengths)
        deferred = np.flatnonzero(self.head.band.deferred(probability, lengths))
        self.deferred += len(deferred)
        self.decided += len(texts) - len(deferred)
        if len(deferred):
            out[deferred] = await full_scores(deferred)
        return out
