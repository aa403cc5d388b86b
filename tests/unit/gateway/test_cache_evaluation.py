"""`propylon eval cache` on a tiny dataset: pair sources read, sources held out one at a time,
weights written, the docs section replaced."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from propylon.gateway.cache import evaluation, pair_sets
from propylon.gateway.cache.verifier import JudgeWeights
from propylon.gateway.protocol import Embeddings

WORDS: dict[str, int] = {}


class BagOfWords:
    """Deterministic embeddings: one dimension per word, so overlap is similarity."""

    async def embed(self, texts: list[str], request: dict[str, Any] | None = None) -> Embeddings:
        vectors = []
        for text in texts:
            vector = np.zeros(256, dtype=np.float32)
            for word in text.lower().replace("?", "").split():
                vector[WORDS.setdefault(word, len(WORDS)) % 256] += 1
            vectors.append((vector / np.linalg.norm(vector)).tolist())
        return Embeddings(vectors, prompt_tokens=0)


def dataset(tmp_path: Path) -> Path:
    (tmp_path / "paraphrase-pairs").mkdir()
    mock = [
        {"origin": "how do i sort a list", "similar": "how do i sort a list quickly"},
        {"origin": "what is the capital of peru", "similar": "capital of peru is what"},
    ]
    (tmp_path / "paraphrase-pairs" / "mock_data.json").write_text(json.dumps(mock))
    rows = [
        "g\tf\t2012\t1\t5.0\tstocks close higher today\tstocks close higher today now",
        "g\tf\t2012\t2\t1.0\tstocks close higher today\tstocks close lower today",
        "g\tf\t2012\t3\t3.0\tignored pair\tignored pair",
    ]
    (tmp_path / "paraphrase-pairs" / "sts-dev.csv").write_text("\n".join(rows) + "\n")
    pairs = []
    for split in ("train", "dev"):
        for n in range(10, 16):
            pairs += [
                {"a": f"send {n} euros to my savings", "b": f"send {n + 1} euros to my savings",
                 "label": 0, "split": split},
                {"a": f"send {n} euros to my savings", "b": f"please send {n} euros to my savings",
                 "label": 1, "split": split},
                {"a": f"is card {n} blocked", "b": f"is card {n} not blocked",
                 "label": 0, "split": split},
            ]  # fmt: skip
    (tmp_path / "pairs-banking77-intent").mkdir()
    (tmp_path / "pairs-banking77-intent" / "pairs.jsonl").write_text(
        "\n".join(json.dumps({**p, "source": "banking77"}) for p in pairs) + "\n"
    )
    return tmp_path


def test_every_source_is_read_with_its_split(tmp_path: Path) -> None:
    pairs = pair_sets.load(dataset(tmp_path))
    by_source = {s: [p for p in pairs if p.source == s] for s in ("gptcache", "sts", "banking77")}
    assert len(by_source["sts"]) == 2, "the 3.0 pair is neither"
    assert len(by_source["banking77"]) == 36
    assert {p.split for p in by_source["banking77"]} == {"train", "dev"}
    gptcache = by_source["gptcache"]
    assert [p.label for p in gptcache] == [1, 0, 1, 0], "each paraphrase against another original"


async def test_each_source_is_scored_by_a_judge_fitted_without_it(tmp_path: Path) -> None:
    prepared = await evaluation.prepare(pair_sets.load(dataset(tmp_path)), BagOfWords())
    results = evaluation.leave_one_source_out(prepared)
    assert [r.source for r in results] == ["gptcache", "sts", "banking77"]
    banking = results[-1]
    assert banking.judge.pairs == 36 and banking.judge.positives == 12
    weights = evaluation.shipped(prepared)
    assert JudgeWeights.from_json(weights.to_json()).min_probability == weights.min_probability
    section = evaluation.render_markdown(results, weights, "bag-of-words")
    assert "| banking77 | 36 (12 / 24) |" in section
    assert "**all held out**" in section


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


def test_the_command_writes_its_section_and_weights_and_refuses_an_empty_directory(
    tmp_path: Path,
) -> None:
    from typer.testing import CliRunner

    from propylon.cli import app

    doc, weights = tmp_path / "benchmarks.md", tmp_path / "judge.json"
    runner = CliRunner()
    (tmp_path / "data").mkdir()
    data = str(dataset(tmp_path / "data"))
    result = runner.invoke(
        app, ["eval", "cache", "--data", data, "--output", str(doc), "--fit", str(weights)]
    )
    assert result.exit_code == 0, result.output
    assert "| banking77 |" in doc.read_text()
    assert JudgeWeights.load(weights).coef.shape == JudgeWeights.load().coef.shape

    missing = runner.invoke(app, ["eval", "cache", "--data", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2
    assert "no pair sources" in missing.output
