"""Fitting one head on whole texts scored by windows, with thresholds chosen on texts it did
not see.

A text's score is what the detector computes: the maximum of the heuristics' score on the
whole text and the classifier's score on each of its windows. Length therefore raises a
benign text's score only through the number of windows, and the thresholds are chosen on
whole held-out texts of every length, so that rise is paid for in the calibration, not by
users. Training is on windows: every window of a benign text is benign (the maximum must stay
low); the windows of an attack share its weight (one of them firing is enough). The labels
then follow the detector's policy on top of these thresholds (``detector.Thresholds.label``:
a block needs the heuristics to corroborate, a long text two windows that agree).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from propylon.guard import heuristics
from propylon.guard.classifier import Head
from propylon.guard.datasets import Example, held_back
from propylon.guard.detector import USER_CORROBORATE
from propylon.guard.features import lexical_features, split_units
from propylon.local.minilm import MiniLMEmbedder

L2 = 1e-4
STEPS = 600
LEARNING_RATE = 0.05
DEV_SHARE = 0.25
# Benign texts flagged / blocked on the dev split, per whole text. Below the stated goals
# (3 % flagged, 0.5 % blocked) to leave room for traffic unlike the dev split.
TARGETS = {"flag": 0.015, "block": 0.002}
# Length buckets (characters, [low, high)) in which the thresholds are calibrated and the
# evaluation reports: a longer text is the maximum over more windows, so one threshold for all
# lengths flags long benign texts far more often than short ones.
LENGTH_BUCKETS = (("< 200", 0, 200), ("200–1,000", 200, 1001), ("> 1,000", 1001, 10**12))
GRID = np.concatenate([np.arange(0.30, 0.99, 0.01), np.arange(0.990, 0.9995, 0.001)])

Floats = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Featurised:
    """Every window of ``examples`` as one feature row, and which text each row belongs to."""

    examples: list[Example]
    x: Floats  # one row per window
    owner: NDArray[np.int64]  # text index of each row
    heuristic: Floats  # heuristic score of each whole text
    labels: Floats  # label of each text
    decoded: NDArray[np.bool_] | None = None  # rows that are a decoded payload's window

    def window_scores(self, head: Head, text: int) -> tuple[list[float], list[float]]:
        """``head``'s scores of one text's own windows and of its decoded payloads' windows."""
        rows = np.flatnonzero(self.owner == text)
        scores = head.probability(self.x[rows])
        payload = self.decoded[rows] if self.decoded is not None else np.zeros(len(rows), bool)
        return [float(v) for v in scores[~payload]], [float(v) for v in scores[payload]]

    def rows(self, texts: NDArray[np.bool_]) -> NDArray[np.bool_]:
        return texts[self.owner]


@dataclass(frozen=True, slots=True)
class Calibrated:
    head: Head
    thresholds: dict[str, Any]
    dev_texts: int


def featurise(
    embedder: MiniLMEmbedder, examples: list[Example], source: str, max_windows: int = 32
) -> Featurised:
    """Windows as the detector cuts them, embedded once (a repeated window once too)."""
    owner: list[int] = []
    windows: list[str] = []
    decoded: list[bool] = []
    for i, example in enumerate(examples):
        own, payloads = split_units(example.text, source, max_windows)
        windows += own + payloads
        owner += [i] * (len(own) + len(payloads))
        decoded += [False] * len(own) + [True] * len(payloads)
    unique = list(dict.fromkeys(windows))
    position = {w: i for i, w in enumerate(unique)}
    vectors = embedder.embed_sync(unique)
    lexical = np.stack([lexical_features(w, heuristics.scan(w)) for w in unique])
    table = np.hstack([vectors, lexical]).astype(np.float32)
    return Featurised(
        examples,
        table[[position[w] for w in windows]],
        np.array(owner, dtype=np.int64),
        np.array(
            [heuristics.heuristic_score(heuristics.scan(e.text)) for e in examples],
            dtype=np.float32,
        ),
        np.array([e.label for e in examples], dtype=np.float32),
        np.array(decoded, dtype=np.bool_),
    )


def fit_logistic(x: Floats, y: Floats, sample_weight: Floats) -> Head:
    """L2-regularised logistic regression, class-balanced, full-batch Adam."""
    positives = float(sample_weight[y == 1].sum())
    negatives = float(sample_weight[y == 0].sum())
    balance = np.where(y == 1, 0.5 / positives, 0.5 / negatives).astype(np.float32)
    weight = sample_weight * balance
    w = np.zeros(x.shape[1], dtype=np.float32)
    b = 0.0
    m_w, v_w = np.zeros_like(w), np.zeros_like(w)
    m_b = v_b = 0.0
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, STEPS + 1):
        p = 1.0 / (1.0 + np.exp(-np.clip(x @ w + b, -30, 30)))
        error = ((p - y) * weight).astype(np.float32)
        grad_w = x.T @ error + np.float32(L2) * w
        grad_b = float(error.sum())
        m_w = beta1 * m_w + (1 - beta1) * grad_w
        v_w = beta2 * v_w + (1 - beta2) * grad_w**2
        m_b = beta1 * m_b + (1 - beta1) * grad_b
        v_b = beta2 * v_b + (1 - beta2) * grad_b**2
        correction1, correction2 = 1 - beta1**step, 1 - beta2**step
        w -= LEARNING_RATE * (m_w / correction1) / (np.sqrt(v_w / correction2) + eps)
        b -= LEARNING_RATE * (m_b / correction1) / (np.sqrt(v_b / correction2) + eps)
    return Head(w.astype(np.float32), b)


def fit_texts(data: Featurised, texts: NDArray[np.bool_]) -> Head:
    """A head fitted on the windows of the chosen texts; each source weighs the same."""
    rows = data.rows(texts)
    owner = data.owner[rows]
    y = data.labels[owner]
    windows_per_text = np.bincount(data.owner, minlength=len(data.examples)).astype(np.float32)
    weight = np.where(y == 1, 1.0 / windows_per_text[owner], 1.0).astype(np.float32)
    origins = np.array([e.origin for e in data.examples])
    for origin in np.unique(origins[texts]):
        of_origin = origins[owner] == origin
        weight[of_origin] /= float(weight[of_origin].sum())
    return fit_logistic(data.x[rows], y, weight)


def text_scores(head: Head, data: Featurised, texts: NDArray[np.bool_]) -> Floats:
    """The detector's score of each chosen text: max(heuristics, max over its windows)."""
    rows = data.rows(texts)
    window = head.probability(data.x[rows])
    best = np.zeros(len(data.examples), dtype=np.float32)
    np.maximum.at(best, data.owner[rows], window)
    return np.maximum(best, data.heuristic)[texts]


def choose_thresholds(
    benign_scores: Floats, targets: dict[str, float] = TARGETS
) -> dict[str, float]:
    """The lowest score on the grid at which the share of benign texts at or above it is
    within each target."""
    out = {
        name: float(next((t for t in GRID if float((benign_scores >= t).mean()) <= rate), 0.999))
        for name, rate in targets.items()
    }
    out["block"] = max(out["block"], out["flag"])
    return {name: round(value, 3) for name, value in out.items()}


def choose_by_length(
    benign_scores: Floats, lengths: NDArray[np.int64], targets: dict[str, float] = TARGETS
) -> dict[str, Any]:
    """Thresholds per length bucket, as ``Thresholds.stored`` reads them: rows ``[below_chars,
    flag, block]`` for every bucket but the last, whose thresholds are the top-level ``flag``
    and ``block``.

    A bucket's threshold is the stricter of two: the one that keeps its own benign texts
    within ``targets``, and the one that does so for all lengths pooled. A bucket may only
    tighten: short dev texts score so low that their own threshold (0.4-0.5) flagged over a
    quarter of an unseen source's short benign questions."""
    pooled = choose_thresholds(benign_scores, targets)
    rows = []
    for _, low, high in LENGTH_BUCKETS:
        inside = (lengths >= low) & (lengths < high)
        chosen = choose_thresholds(benign_scores[inside], targets) if inside.any() else pooled
        flag = max(chosen["flag"], pooled["flag"])
        rows.append([high, flag, max(chosen["block"], pooled["block"], flag)])
    _, flag, block = rows.pop()
    return {"flag": flag, "block": block, "by_length": rows, "corroborate": USER_CORROBORATE}


def fit_calibrated(data: Featurised, texts: NDArray[np.bool_]) -> Calibrated:
    """Fit on most of the chosen texts; choose the thresholds, per length bucket, on the rest
    (``DEV_SHARE`` of each source, by a hash of the text), which the head never saw."""
    dev = np.array([held_back(e.text, DEV_SHARE) for e in data.examples]) & texts
    head = fit_texts(data, texts & ~dev)
    benign_dev = dev & (data.labels == 0)
    scores = text_scores(head, data, benign_dev)
    lengths = np.array([len(e.text) for e in data.examples], dtype=np.int64)[benign_dev]
    return Calibrated(head, choose_by_length(scores, lengths), int(dev.sum()))
