"""Choosing the first stage's band: per length bucket, one-sided, against the full head."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from propylon.guard import first_stage_training as training
from propylon.guard.classifier import EMBEDDING_SIZE, Head, InjectionClassifier
from propylon.guard.datasets import Example
from propylon.guard.features import LEXICAL_SIZE
from propylon.guard.first_stage import head_digest
from propylon.guard.fitting import Featurised

STATIC = 16


def synthetic_pair() -> training.Pair:
    """Three sources of short and long texts, one window each; the first feature of both
    vectors carries the label (with noise), so either head can learn it."""
    rng = np.random.default_rng(0)
    examples, full_rows, static_rows = [], [], []
    for origin in ("a", "b", "c"):
        for i in range(80):
            label = int(i % 4 == 0) if origin != "c" else 0
            length = 50 if i % 2 else 1500
            text = f"{origin} {i} " + "x" * length
            examples.append(Example(text, label, "user", origin))
            signal = (2 * label - 1) * 3 + rng.normal()
            full = rng.normal(size=EMBEDDING_SIZE + LEXICAL_SIZE).astype(np.float32) * 0.1
            full[0] = signal
            static = rng.normal(size=STATIC + LEXICAL_SIZE).astype(np.float32) * 0.1
            static[0] = signal + rng.normal()
            full_rows.append(full)
            static_rows.append(static)
    owner = np.arange(len(examples), dtype=np.int64)
    labels = np.array([e.label for e in examples], dtype=np.float32)
    heuristic = np.zeros(len(examples), dtype=np.float32)
    return training.Pair(
        Featurised(examples, np.stack(full_rows), owner, heuristic, labels),
        Featurised(examples, np.stack(static_rows), owner, heuristic, labels),
    )


def test_the_band_is_one_sided_per_length_and_below_the_static_flag() -> None:
    pair = synthetic_pair()
    full, first = training.fit_first_stage(pair, np.ones(len(pair.full.examples), dtype=np.bool_))
    band = first.band
    assert band.high > 1.0 and all(high > 1.0 for _, _, high in band.by_length)
    assert len(band.by_length) == len(full.thresholds["by_length"])
    flags = [row[1] for row in first.thresholds["by_length"]] + [first.thresholds["flag"]]
    lows = [row[1] for row in band.by_length] + [band.low]
    assert all(low <= flag for low, flag in zip(lows, flags, strict=True))


def test_the_static_head_alone_never_detects_what_the_full_head_does_not() -> None:
    pair = synthetic_pair()
    texts = np.ones(len(pair.full.examples), dtype=np.bool_)
    full, first = training.fit_first_stage(pair, texts)
    scored = training.score(pair, full, first, texts)
    lengths = training.text_lengths(pair.full)
    for flag_of, length in (
        (full.thresholds["by_length"][0][1], 50),
        (full.thresholds["flag"], 1500),
    ):
        of_length = lengths >= 1001 if length > 1000 else lengths < 200
        cascade, alone = scored.cascade[of_length], scored.full[of_length]
        assert not ((cascade >= flag_of) & (alone < flag_of)).any()


def test_fit_against_records_the_full_head_it_was_chosen_for() -> None:
    pair = synthetic_pair()
    texts = np.ones(len(pair.full.examples), dtype=np.bool_)
    full, _ = training.fit_first_stage(pair, texts)
    classifier = InjectionClassifier(
        {"user": full.head, "retrieved": Head(full.head.weights, 0.0)},
        {"thresholds": {"user": full.thresholds}},
    )
    first = training.fit_against(pair, classifier, "static-sha")
    assert first.metadata["full_head_sha256"] == head_digest(full.head)
    assert first.metadata["static_sha256"] == "static-sha"


def test_the_distilled_head_learns_the_teachers_scores_not_the_labels() -> None:
    pair = synthetic_pair()
    wrong = np.zeros_like(pair.full.labels)  # labels it must not read: all benign
    blind = training.Pair(
        pair.full,
        Featurised(
            pair.static.examples, pair.static.x, pair.static.owner, pair.static.heuristic, wrong
        ),
    )
    teacher = Head(np.eye(1, EMBEDDING_SIZE + LEXICAL_SIZE, dtype=np.float32)[0], 0.0)
    texts = np.ones(len(pair.full.examples), dtype=np.bool_)
    student = training.distil(blind, teacher, texts)
    expected = teacher.probability(pair.full.x)
    learned = student.probability(pair.static.x)
    assert np.corrcoef(expected, learned)[0, 1] > 0.9


def test_unlabelled_windows_of_a_held_out_source_stay_out_of_its_fold() -> None:
    pair = synthetic_pair()
    rng = np.random.default_rng(1)
    size = STATIC + LEXICAL_SIZE
    extra = training.Unlabelled(
        rng.normal(size=(6, EMBEDDING_SIZE + LEXICAL_SIZE)).astype(np.float32),
        rng.normal(size=(6, size)).astype(np.float32),
        np.array(["a", "a", "b", "c", "", ""]),
    )
    assert extra.rows({"a"}).tolist() == [False, False, True, True, True, True]
    with_extra = training.Pair(pair.full, pair.static, extra)
    origins = np.array([e.origin for e in pair.full.examples])
    _, first = training.fit_first_stage(with_extra, origins != "a")
    assert first.band.by_length  # fitted and a band chosen, with the held-out source's left out


def test_train_first_stage_refuses_an_unknown_student(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from propylon.cli import app

    result = CliRunner().invoke(
        app, ["guard", "train-first-stage", "--data", str(tmp_path), "--student", "teacher"]
    )
    assert result.exit_code == 2
    assert "--student" in result.output


def test_the_cascade_reads_deferred_windows_as_served_and_the_full_column_stays_exact() -> None:
    pair = synthetic_pair()
    texts = np.ones(len(pair.full.examples), dtype=np.bool_)
    full, first = training.fit_first_stage(pair, texts)
    exact = training.score(pair, full, first, texts)
    flipped = pair.full.x.copy()
    flipped[:, 0] = -flipped[:, 0]  # MiniLM read another way (``guard.user_int8``)
    served = training.Pair(
        pair.full,
        pair.static,
        served=Featurised(
            pair.full.examples, flipped, pair.full.owner, pair.full.heuristic, pair.full.labels
        ),
    )
    as_served = training.score(served, full, first, texts)
    np.testing.assert_array_equal(as_served.full, exact.full)
    np.testing.assert_array_equal(as_served.static, exact.static)
    deferred = as_served.deferred  # one window a text: windows and texts line up
    assert deferred.any() and not deferred.all()
    assert not np.allclose(as_served.cascade[deferred], exact.cascade[deferred])
    np.testing.assert_array_equal(as_served.cascade[~deferred], exact.cascade[~deferred])
