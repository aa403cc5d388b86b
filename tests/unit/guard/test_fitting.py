"""Whole-text scores from windows, and thresholds chosen on texts the head never saw."""

from __future__ import annotations

import numpy as np

from propylon.guard.classifier import Head
from propylon.guard.datasets import Example
from propylon.guard.detector import Thresholds
from propylon.guard.fitting import (
    LENGTH_BUCKETS,
    Featurised,
    choose_by_length,
    choose_thresholds,
    text_scores,
)


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


def test_each_length_bucket_keeps_its_benign_texts_within_the_targets_and_never_loosens() -> None:
    rng = np.random.default_rng(7)
    lengths = np.concatenate([np.full(500, 100), np.full(500, 600), np.full(500, 3000)])
    # Long benign texts are the maximum over more windows: their scores run higher.
    scores = np.concatenate(
        [rng.uniform(0, 0.5, 500), rng.uniform(0, 0.8, 500), rng.uniform(0.3, 0.97, 500)]
    )
    stored = choose_by_length(
        scores.astype(np.float32), lengths.astype(np.int64), {"flag": 0.03, "block": 0.005}
    )
    thresholds = Thresholds.stored(stored, Thresholds(1.0, 1.0))
    for _, low, high in LENGTH_BUCKETS:
        inside = (lengths >= low) & (lengths < high)
        of_length = thresholds.for_length(int(lengths[inside][0]))
        assert (scores[inside] >= of_length.flag).mean() <= 0.03
        assert (scores[inside] >= of_length.block).mean() <= 0.005
    assert thresholds.for_length(100).flag < thresholds.for_length(3000).flag
    pooled = choose_thresholds(scores.astype(np.float32), {"flag": 0.03, "block": 0.005})
    assert thresholds.for_length(100).flag == pooled["flag"], "a bucket may only tighten"


def test_a_configured_threshold_holds_for_every_length() -> None:
    stored = {"flag": 0.9, "block": 0.99, "by_length": [[200, 0.6, 0.8], [1001, 0.7, 0.9]]}
    thresholds = Thresholds.stored(stored, Thresholds(1.0, 1.0)).overridden(0.5, None)
    assert [thresholds.for_length(n).flag for n in (10, 500, 5000)] == [0.5, 0.5, 0.5]
    assert [thresholds.for_length(n).block for n in (10, 500, 5000)] == [0.8, 0.9, 0.99]


def test_window_scores_split_a_texts_own_windows_from_its_decoded_payloads() -> None:
    data = featurised([[-4.0, 3.0], [1.0, 2.0]], [0.0, 0.0])
    data = Featurised(
        data.examples,
        data.x,
        data.owner,
        data.heuristic,
        data.labels,
        np.array([False, False, False, True]),
    )
    head = Head(np.ones(1, dtype=np.float32), 0.0)
    own, decoded = data.window_scores(head, 1)
    assert len(own) == 1 and len(decoded) == 1
    assert decoded[0] > own[0]
    assert data.window_scores(head, 0)[1] == []


def test_calibrated_thresholds_store_the_corroboration_the_detector_reads() -> None:
    scores = np.linspace(0.0, 0.9, 200).astype(np.float32)
    stored = choose_by_length(scores, np.full(200, 50, dtype=np.int64))
    assert Thresholds.stored(stored, Thresholds(1.0, 1.0)).corroborate == 0.5
