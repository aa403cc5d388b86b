"""Choosing the judge's probability threshold on pairs it was not fitted on."""

from __future__ import annotations

import numpy as np

from propylon.gateway.cache import judge_training


def test_the_threshold_is_the_lowest_probability_within_the_target() -> None:
    p = np.array([0.3612, 0.3655, 0.3671, 0.3702, 0.3745, 0.38, 0.39, 0.40])
    labels = np.array([0, 1, 0, 1, 1, 1, 1, 1])
    eligible = np.ones(len(p), dtype=bool)
    # Serving from 0.3671 has 1 of 6 wrong; from 0.3702 none: a hundredths grid would jump
    # to 0.38 and lose two right answers.
    assert judge_training.choose(p, eligible, labels, 0.0) == 0.3702
    assert judge_training.choose(p, eligible, labels, 0.2) == 0.3655  # 1 of 7 wrong
    assert judge_training.choose(p, eligible, labels, 0.5) == 0.3612


def test_ineligible_pairs_do_not_count_and_nothing_within_gives_the_highest() -> None:
    p = np.array([0.2, 0.5, 0.9])
    labels = np.array([1, 0, 0])
    assert judge_training.choose(p, np.array([True, False, False]), labels, 0.0) == 0.2
    assert judge_training.choose(p, np.ones(3, dtype=bool), labels, 0.0) == judge_training.HIGHEST
    assert judge_training.choose(p, np.zeros(3, dtype=bool), labels, 0.0) == judge_training.HIGHEST
