"""Fitting the semantic cache's judge: a logistic regression over ``pair_features``.

``fit`` standardises the features and runs Newton's method with a small L2 penalty (fourteen
inputs, tens of thousands of pairs: a few iterations, well under a second). ``choose`` picks
the lowest probability (in steps of 1e-4) whose hits, on pairs the model was not fitted on,
stay within the target share of wrong ones: the most answers for the error allowed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from propylon.gateway.cache.pair_features import SIGNS
from propylon.gateway.cache.verifier import JudgeWeights

L2 = 1e-2
ITERATIONS = 25
LOWEST, HIGHEST, STEP = 0.05, 0.99, 1e-4  # the judge's probability threshold: range, step

Matrix = NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Outcome:
    """Hits of one decision rule on labelled pairs."""

    hits: int
    wrong: int
    positives: int
    pairs: int

    @property
    def wrong_share(self) -> float:
        return self.wrong / self.hits if self.hits else 0.0

    @property
    def hit_rate(self) -> float:
        """Share of the true paraphrases answered from the cache."""
        return (self.hits - self.wrong) / self.positives if self.positives else 0.0

    def __add__(self, other: Outcome) -> Outcome:
        return Outcome(
            self.hits + other.hits,
            self.wrong + other.wrong,
            self.positives + other.positives,
            self.pairs + other.pairs,
        )


def outcome(served: NDArray[np.bool_], labels: NDArray[np.int64]) -> Outcome:
    return Outcome(
        int(served.sum()),
        int((served & (labels == 0)).sum()),
        int((labels == 1).sum()),
        len(labels),
    )


def fit(
    x: Matrix,
    y: NDArray[np.int64],
    groups: NDArray[np.str_] | None = None,
    *,
    min_probability: float = 0.5,
) -> JudgeWeights:
    """Logistic regression of ``y`` on ``x``. Each group (pair source) weighs the same, and
    within it each label, so no source's quirks dominate the fit."""
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = np.hstack([(x - mean) / scale, np.ones((len(x), 1))])
    groups = np.zeros(len(y), dtype=str) if groups is None else groups
    sample = np.zeros(len(y))
    names = np.unique(groups)
    for name in names:
        for label in (0, 1):
            cell = (groups == name) & (y == label)
            if cell.any():
                labels = len(np.unique(y[groups == name]))
                sample[cell] = len(y) / (len(names) * labels * cell.sum())
    # A feature whose weight comes out against its meaning (a differing number that makes a
    # hit *more* likely) learned a quirk of some source: it is dropped and the rest refitted.
    signs = np.array([*SIGNS, 0.0])
    active = np.ones(z.shape[1], dtype=bool)
    while True:
        w = np.zeros(z.shape[1])
        w[active] = _newton(z[:, active], y, sample)
        wrong = active & (signs * w < 0)
        if not wrong.any():
            return JudgeWeights(mean, scale, w[:-1], float(w[-1]), min_probability)
        active &= ~wrong


def _newton(z: Matrix, y: NDArray[np.int64], sample: NDArray[np.float64]) -> Matrix:
    w = np.zeros(z.shape[1])
    penalty = np.full(z.shape[1], L2 * len(y))
    penalty[-1] = 0.0  # the bias is not shrunk
    for _ in range(ITERATIONS):
        p = 1 / (1 + np.exp(-(z @ w)))
        gradient = z.T @ (sample * (p - y)) + penalty * w
        hessian = (z * (sample * p * (1 - p))[:, None]).T @ z + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if float(np.abs(step).max()) < 1e-8:
            break
    return w


def probabilities(weights: JudgeWeights, x: Matrix) -> NDArray[np.float64]:
    return 1 / (1 + np.exp(-weights.logit(x)))


def choose(
    p: NDArray[np.float64],
    eligible: NDArray[np.bool_],
    labels: NDArray[np.int64],
    target: float,
) -> float:
    """The lowest probability (from ``LOWEST``, in steps of ``STEP``) whose served pairs are
    at most ``target`` wrong (``HIGHEST`` when none is).

    The candidates are the probabilities the pairs themselves have, floored to ``STEP``:
    a fitted judge's probabilities crowd into a narrow band, where a fixed grid of hundredths
    jumps over most of the choices."""
    steps = np.floor(np.round(p[eligible] / STEP, 6)).astype(np.int64)  # 0.3702 is 3702
    wrong = labels[eligible] == 0
    candidates = np.unique(steps[steps >= round(LOWEST / STEP)])  # ascending
    if not len(candidates):
        return HIGHEST
    # Pairs served at each candidate: those whose step is at least it (a suffix sum).
    position = np.searchsorted(candidates, steps, side="left")
    counted = steps >= candidates[0]
    hits = np.bincount(position[counted], minlength=len(candidates))[::-1].cumsum()[::-1]
    bad = np.bincount(position[counted], weights=wrong[counted], minlength=len(candidates))
    bad = bad[::-1].cumsum()[::-1]
    within = np.flatnonzero(bad <= target * hits)
    return round(float(candidates[within[0]]) * STEP, 4) if len(within) else HIGHEST
