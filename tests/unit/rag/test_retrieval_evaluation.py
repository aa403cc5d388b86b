"""The retrieval evaluation's metrics and its section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from propylon.rag.evaluation import END, START, scores, write_section


def test_recall_and_ndcg_follow_beir() -> None:
    qrels = {"q1": {"a": 1}, "q2": {"b": 1, "c": 1}}
    runs = {"q1": ["a", "x"], "q2": ["x"] * 10 + ["b"]}
    result = scores(runs, qrels)
    assert result.ndcg_at_10 == pytest.approx(0.5)  # q1 perfect, q2 nothing in its top 10
    assert result.recall_at_10 == pytest.approx(0.5)
    assert result.recall_at_100 == pytest.approx((1 + 0.5) / 2)


def test_the_section_replaces_only_its_own_markers(tmp_path: Path) -> None:
    path = tmp_path / "benchmarks.md"
    path.write_text("# Benchmarks\n\n<!-- bench:x:start -->\n## X\n<!-- bench:x:end -->\n")
    write_section(path, "## Retrieval quality\n\nfirst")
    write_section(path, "## Retrieval quality\n\nsecond")
    text = path.read_text()
    assert text.count(START) == 1 and text.count(END) == 1
    assert "second" in text and "first" not in text
    assert "<!-- bench:x:start -->\n## X\n<!-- bench:x:end -->" in text
