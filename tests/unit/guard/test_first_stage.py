"""The guard's static first stage: MiniLM runs only for windows inside the band."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from propylon.gateway.protocol import Embeddings
from propylon.guard.classifier import EMBEDDING_SIZE, Head, InjectionClassifier
from propylon.guard.detector import (
    InjectionDetector,
    Thresholds,
    as_served,
    load_first_stage,
    near_threshold,
)
from propylon.guard.features import LEXICAL_SIZE
from propylon.guard.first_stage import (
    Band,
    FirstStage,
    FirstStageHead,
    FirstStageMismatch,
    head_digest,
)
from propylon.local.static import StaticEmbedder

BENIGN = "What is a good recipe for banana bread without eggs?"


class CountingEmbedder:
    """Stands in for MiniLM: vectors of ``first`` then zeros, and the texts it was asked to
    read."""

    def __init__(self, first: float = 0.0) -> None:
        self.texts: list[str] = []
        self.first = first

    async def embed(self, texts: list[str], request: dict[str, Any] | None = None) -> Embeddings:
        self.texts += texts
        return Embeddings([[self.first] + [0.0] * 383 for _ in texts], prompt_tokens=0)


def head(band: Band, static: StaticEmbedder) -> FirstStageHead:
    weights = np.zeros(static.dimensions + LEXICAL_SIZE, dtype=np.float32)
    return FirstStageHead(Head(weights, 0.0), {"flag": 0.6, "block": 0.8}, band, {})


def detector(first: FirstStage, embedder: CountingEmbedder) -> InjectionDetector:
    return InjectionDetector(InjectionClassifier.load(), embedder, first_stage=first)


async def test_a_window_outside_the_band_costs_no_transformer_call(static: StaticEmbedder) -> None:
    embedder = CountingEmbedder()
    first = FirstStage(static, head(Band(0.9, 1.0), static))  # the head says 0.5: sure
    verdict = await detector(first, embedder).scan(BENIGN)
    assert embedder.texts == []
    assert first.decided == 1 and first.deferred == 0
    assert verdict.classifier_score is not None


async def test_a_window_inside_the_band_is_read_by_the_full_classifier(
    static: StaticEmbedder,
) -> None:
    embedder = CountingEmbedder()
    first = FirstStage(static, head(Band(0.4, 0.6), static))
    await detector(first, embedder).scan(BENIGN)
    assert embedder.texts == [BENIGN]
    assert first.deferred == 1


async def test_retrieved_text_always_goes_to_the_full_classifier(static: StaticEmbedder) -> None:
    embedder = CountingEmbedder()
    first = FirstStage(static, head(Band(0.9, 1.0), static))
    await detector(first, embedder).scan(BENIGN, "retrieved")
    assert embedder.texts == [BENIGN]


async def test_user_input_goes_to_the_user_model_and_retrieved_text_to_the_other(
    static: StaticEmbedder,
) -> None:
    shared, user = CountingEmbedder(), CountingEmbedder()  # ``guard.user_int8``'s split
    first = FirstStage(static, head(Band(0.4, 0.6), static))
    guard = InjectionDetector(
        InjectionClassifier.load(), shared, first_stage=first, user_embedder=user
    )
    await guard.scan(BENIGN)
    await guard.scan("Owls hunt at night.", "retrieved")
    assert user.texts == [BENIGN]
    assert shared.texts == ["Owls hunt at night."]


def one_feature_classifier(bias: float) -> InjectionClassifier:
    """A user head reading only the first embedding dimension: sigmoid(x0 + bias); flag at
    0.5, block at 0.9."""
    weights = np.zeros(EMBEDDING_SIZE + LEXICAL_SIZE, dtype=np.float32)
    weights[0] = 1.0
    thresholds = {"user": {"flag": 0.5, "block": 0.9}}
    return InjectionClassifier({"user": Head(weights, bias)}, {"thresholds": thresholds})


@pytest.mark.parametrize(("bias", "reread"), [(0.0, True), (-5.0, False)])
async def test_a_fast_reading_near_a_threshold_is_read_again_exactly(
    bias: float, reread: bool
) -> None:
    exact, fast = CountingEmbedder(first=3.0), CountingEmbedder(first=0.0)
    guard = InjectionDetector(one_feature_classifier(bias), exact, user_embedder=fast)
    verdict = await guard.scan(BENIGN)
    assert fast.texts == [BENIGN]
    if reread:  # fast: sigmoid(0) = 0.5, on the flag threshold; exact: sigmoid(3) = 0.95
        assert exact.texts == [BENIGN] and guard.rereads == 1
        assert guard.int8_windows() == {"kept": 0, "reread": 1}
        assert verdict.classifier_score == pytest.approx(1 / (1 + np.exp(-3.0)), abs=1e-4)
    else:  # fast: sigmoid(-5) = 0.007, far below: the fast reading decides
        assert exact.texts == [] and guard.rereads == 0
        assert guard.int8_windows() == {"kept": 1, "reread": 0}
        assert verdict.classifier_score == pytest.approx(1 / (1 + np.exp(5.0)), abs=1e-4)


def test_near_a_threshold_is_measured_in_logits_on_both_thresholds() -> None:
    t = Thresholds(flag=0.5, block=0.9)
    assert near_threshold(0.5, t) and near_threshold(0.9, t) and near_threshold(0.93, t)
    assert not near_threshold(0.05, t)  # logit -2.9: 2.9 from the flag's 0
    assert not near_threshold(0.999, t)  # logit 6.9: 4.7 from the block's 2.2


def test_evaluations_serve_the_exact_reading_only_near_a_threshold() -> None:
    t = Thresholds(flag=0.5, block=0.9)
    served, reread = as_served([0.8, 0.2, 0.3], [0.49, 0.01, 0.999], [t, t, t])
    assert served == [0.8, 0.01, 0.999] and reread == 1


def test_static_scores_land_on_the_full_thresholds(static: StaticEmbedder) -> None:
    first = head(Band(0.0, 0.0), static)
    mapped = first.on_full_scale(
        np.array([0.0, 0.6, 0.8, 1.0], dtype=np.float32), {"flag": 0.9, "block": 0.95}
    )
    assert mapped.tolist() == pytest.approx([0.0, 0.9, 0.95, 1.0])


def test_the_shipped_first_stage_loads_against_the_shipped_static_table(
    static: StaticEmbedder,
) -> None:
    first = load_first_stage(static)
    assert 0.0 <= first.head.band.low < first.head.band.high


def test_a_head_trained_on_another_static_table_is_refused(
    tmp_path: Path, static: StaticEmbedder
) -> None:
    shipped = load_first_stage(static).head
    path = tmp_path / "first_stage.npz"
    FirstStageHead(
        shipped.head, shipped.thresholds, shipped.band, {"static_sha256": "0" * 64}
    ).save(path)
    with pytest.raises(FirstStageMismatch, match="another static table"):
        FirstStageHead.load(path, static_sha256=static.weights_sha256)


BY_LENGTH = {"flag": 0.98, "block": 0.999, "by_length": [[200, 0.86, 0.98], [1001, 0.9, 0.99]]}


def test_static_scores_land_on_the_full_thresholds_of_their_text_length(
    static: StaticEmbedder,
) -> None:
    first = FirstStageHead(
        head(Band(0.0, 0.0), static).head,
        {"flag": 0.7, "block": 0.9, "by_length": [[200, 0.5, 0.6], [1001, 0.55, 0.65]]},
        Band(0.0, 0.0),
        {},
    )
    probability = np.array([0.5, 0.6, 0.55, 0.7, 0.9], dtype=np.float32)
    lengths = np.array([10, 10, 500, 5000, 5000], dtype=np.int64)
    mapped = first.on_full_scale(probability, BY_LENGTH, lengths)
    assert mapped.tolist() == pytest.approx([0.86, 0.98, 0.9, 0.98, 0.999])


def test_the_band_of_a_window_is_the_band_of_its_text_length() -> None:
    band = Band(0.5, 1.01, ((200, 0.1, 1.01), (1001, 0.3, 1.01)))
    probability = np.array([0.2, 0.2, 0.2, 0.6], dtype=np.float32)
    lengths = np.array([50, 500, 5000, 5000], dtype=np.int64)
    assert band.deferred(probability, lengths).tolist() == [True, False, False, True]
    assert band.deferred(probability).tolist() == [False, False, False, True]


def test_a_band_by_length_survives_save_and_load(tmp_path: Path, static: StaticEmbedder) -> None:
    band = Band(0.5, 1.01, ((200, 0.1, 0.9), (1001, 0.3, 1.01)))
    path = tmp_path / "first_stage.npz"
    FirstStageHead(head(band, static).head, BY_LENGTH, band, {"static_sha256": "x"}).save(path)
    loaded = FirstStageHead.load(path)
    assert loaded.band == band
    assert loaded.thresholds["by_length"] == BY_LENGTH["by_length"]


async def test_the_detector_defers_by_the_length_of_the_whole_message(
    static: StaticEmbedder,
) -> None:
    # The head says 0.5 for every window: deferred for a short message (band from 0.4), not
    # for the windows of a long one (band from 0.6), though each window is short.
    band = Band(0.6, 1.01, ((200, 0.4, 1.01),))
    long_text = " ".join([BENIGN] * 20)
    embedder = CountingEmbedder()
    first = FirstStage(static, head(band, static))
    scanner = detector(first, embedder)
    await scanner.scan(BENIGN)
    assert embedder.texts == [BENIGN]
    await scanner.scan(long_text)
    assert embedder.texts == [BENIGN], "no window of the long message went to MiniLM"


def test_the_shipped_first_stage_was_fitted_against_the_shipped_classifier(
    static: StaticEmbedder,
) -> None:
    """After `propylon guard train`, run `propylon guard train-first-stage`."""
    first = load_first_stage(static)
    user = InjectionClassifier.load().heads["user"]
    assert first.head.metadata.get("full_head_sha256") == head_digest(user)
