"""`propylon eval extractive`: the threshold choice on dev, the report, and bad paths."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from propylon.cli import app
from propylon.local.extractive_eval import Score, choose, render_markdown


def score(threshold: float, gold: int, refused: int) -> Score:
    return Score(threshold, 100, gold, 100, 100, refused)


def test_the_threshold_answering_most_among_those_refusing_enough_wins_the_highest_of_ties() -> (
    None
):
    scores = [score(0.2, 90, 50), score(0.3, 84, 91), score(0.4, 84, 99), score(0.5, 70, 100)]
    assert choose(scores).threshold == 0.4


def test_with_no_threshold_refusing_enough_the_one_refusing_most_is_chosen() -> None:
    assert choose([score(0.2, 90, 50), score(0.3, 80, 70)]).threshold == 0.3


def test_the_report_says_which_goal_is_missed() -> None:
    dev = [score(0.38, 84, 99)]
    text = render_markdown(dev, dev[0], score(0.38, 80, 99), "propylon eval extractive")
    assert (
        "| answerable, answered citing a gold abstract | 100 | 80.0% (80) | ≥ 85% | **missed** |"
        in text
    )
    assert "| unanswerable, refused | 100 | 99.0% (99) | ≥ 90% | met |" in text


def test_a_missing_dataset_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["eval", "extractive", "--dataset", str(tmp_path)])
    assert result.exit_code == 2
    assert "no corpus.jsonl.gz" in result.output
