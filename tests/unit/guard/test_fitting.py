"""Whole-text scores from windows, and thresholds chosen on texts the head never saw."""

from __future__ import annotations

import numpy as np

from propylon.guard.classifier import Head
from propylon.guard.datasets import Example
from propylon.guard.fitting import Featurised, choose_thresholds, text_scores


def featurised(window_values: list[list[float]], heuristic: list[float]) -> Featurised:
    """One feature per window whose value is its logit under a head of weight 1."""
    owner = [i for i, values in enumerate(window_values) for _ in values]
    x = np.array([[v] for values in window_values for v in values], dtype=np.float32)
    examples = [Example(f"text {i}", 0, "user", "test") for i in range(len(window_values))]
    return Featurised(
        examples,
        x,
        np.array(owner, dtype=np.int64),
        np.array(heuristic, dtype=np.float32),
        np.zeros(len(examples), dtype=np.float32),
    )


def test_a_text_scores_its_highest_window_or_its_heuristics() -> None:
    head = Head(np.ones(1, dtype=np.float32), 0.0)
    data = featurised([[-4.0], [-4.0, -4.0, -4.0, -4.0, 3.0], [-4.0, -4.0]], [0.0, 0.0, 0.9])
    scores = text_scores(head, data, np.ones(3, dtype=np.bool_))
    assert scores[0] < 0.02
    assert abs(scores[1] - 1 / (1 + np.exp(-3.0))) < 1e-5
    assert abs(scores[2] - 0.9) < 1e-6


def test_more_benign_windows_do_not_raise_the_score() -> None:
    head = Head(np.ones(1, dtype=np.float32), 0.0)
    data = featurised([[-2.0], [-2.0] * 30], [0.0, 0.0])
    short, long = text_scores(head, data, np.ones(2, dtype=np.bool_))
    assert short == long


def test_thresholds_keep_benign_flags_and_blocks_within_their_targets() -> None:
    benign = np.linspace(0.0, 0.999, 1000).astype(np.float32)
    thresholds = choose_thresholds(benign, {"flag": 0.03, "block": 0.005})
    assert (benign >= thresholds["flag"]).mean() <= 0.03
    assert (benign >= thresholds["block"]).mean() <= 0.005
    assert thresholds["flag"] <= thresholds["block"]
