"""`propylon eval cache` on a tiny dataset: counts, the chosen threshold, the docs section."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from propylon.gateway.cache import evaluation
from propylon.gateway.protocol import Embeddings

WORDS: dict[str, int] = {}


class BagOfWords:
    """Deterministic embeddings: one dimension per word, so overlap is similarity."""

    async def embed(self, texts: list[str], request: dict[str, Any] | None = None) -> Embeddings:
        vectors = []
        for text in texts:
            vector = np.zeros(64, dtype=np.float32)
            for word in text.lower().replace("?", "").split():
                vector[WORDS.setdefault(word, len(WORDS))] += 1
            vectors.append((vector / np.linalg.norm(vector)).tolist())
        return Embeddings(vectors, prompt_tokens=0)


def dataset(tmp_path: Path) -> Path:
    mock = [
        {"origin": "how do i sort a list", "similar": "how do i sort a list quickly"},
        {"origin": "what is the capital of peru", "similar": "capital of peru is what"},
    ]
    (tmp_path / "mock_data.json").write_text(json.dumps(mock))
    rows = [
        "g\tf\t2012\t1\t5.0\tstocks close higher today\tstocks close higher today now",
        "g\tf\t2012\t2\t1.0\tstocks close higher today\tstocks close lower today",
        "g\tf\t2012\t3\t3.0\tignored pair\tignored pair",
    ]
    (tmp_path / "sts-dev.csv").write_text("\n".join(rows) + "\n")
    return tmp_path


async def test_counts_hits_and_wrong_hits_with_and_without_the_second_check(
    tmp_path: Path,
) -> None:
    pairs = evaluation.load_pairs(dataset(tmp_path))
    assert (len(pairs.sts_positive), len(pairs.sts_negative)) == (1, 1)
    rows = await evaluation.evaluate(pairs, BagOfWords(), thresholds=(0.7,))
    bare, checked = rows
    assert (bare.mock_correct, bare.sts_correct, bare.sts_wrong) == (2, 1, 1)
    assert (checked.sts_correct, checked.sts_wrong) == (1, 0), "higher vs lower is refused"
    assert evaluation.choose_threshold(rows) == checked


def test_the_section_replaces_only_its_own_markers(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        "# Benchmarks\n\n<!-- bench:gateway:start -->\nkept\n<!-- bench:gateway:end -->\n"
    )
    evaluation.write_section(doc, "## Semantic cache precision\n\nfirst\n")
    evaluation.write_section(doc, "## Semantic cache precision\n\nsecond\n")
    text = doc.read_text()
    assert "kept" in text and "second" in text and "first" not in text
    assert text.count("## Semantic cache precision") == 1


def test_the_command_writes_its_section_and_refuses_a_wrong_dataset(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from propylon.cli import app

    doc = tmp_path / "benchmarks.md"
    runner = CliRunner()
    result = runner.invoke(
        app, ["eval", "cache", "--dataset", str(dataset(tmp_path)), "--output", str(doc)]
    )
    assert result.exit_code == 0, result.output
    assert "| cosine + second check | 0.94 |" in doc.read_text()

    missing = runner.invoke(app, ["eval", "cache", "--dataset", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert "mock_data.json" in missing.output
