"""The guard's static first stage: MiniLM runs only for windows inside the band."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from propylon.gateway.protocol import Embeddings
from propylon.guard.classifier import Head, InjectionClassifier
from propylon.guard.detector import InjectionDetector, load_first_stage
from propylon.guard.features import LEXICAL_SIZE
from propylon.guard.first_stage import Band, FirstStage, FirstStageHead, FirstStageMismatch
from propylon.local.static import StaticEmbedder

BENIGN = "What is a good recipe for banana bread without eggs?"


class CountingEmbedder:
    """Stands in for MiniLM: zero vectors, and the texts it was asked to read."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def embed(self, texts: list[str], request: dict[str, Any] | None = None) -> Embeddings:
        self.texts += texts
        return Embeddings([[0.0] * 384 for _ in texts], prompt_tokens=0)


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    return StaticEmbedder.load()


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
