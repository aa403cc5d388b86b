"""`propylon eval extractive`: the threshold choice on dev, the report, and bad paths."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from propylon.cli import app
from propylon.local.extractive_eval import Case, Outcome, Score, choose, render_markdown


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


def test_the_report_gives_held_out_results_by_kind_and_length() -> None:
    assert Case("Owls hunt at night?", [], frozenset()).length == "≤ 8 words"
    assert Case(" ".join(["word"] * 15), [], frozenset()).length == "≥ 15 words"
    outcomes = (
        Outcome("SciFact claim", "9-14 words", answerable=True, success=True, answered=True),
        Outcome("SciFact claim", "9-14 words", answerable=True, success=False, answered=True),
        Outcome("banking77 question", "≤ 8 words", answerable=False, success=True),
    )
    held_out = Score(0.38, 2, 1, 2, 1, 1, 1, 12.5, outcomes)
    text = render_markdown([held_out], held_out, held_out, "propylon eval extractive")
    assert "| SciFact claims, 9-14 words | 2 | 50.0% (1) |" in text
    assert "| banking77 questions, ≤ 8 words | 1 | 100.0% (1) |" in text
    assert "| answerable, first quote from a gold abstract | 2 | 50.0% (1) | | |" in text
    assert "| CPU time per answer, embedding its sentences included | 3 | 12 ms | | |" in text


def test_the_report_shows_the_alternatives_measured_beside_the_shipped_ranking() -> None:
    shipped = Score(0.32, 4, 3, 4, 2, 2, 2, 1.0, ())
    rank_order = Score(0.32, 4, 2, 4, 2, 2, 1, 1.0, ())
    ablation = [("cosine alone, quotes in rank order", rank_order), ("shipped", shipped)]
    text = render_markdown([shipped], shipped, shipped, "propylon eval extractive", ablation)
    assert "| dev split, threshold 0.32 | answered citing gold |" in text
    assert "| cosine alone, quotes in rank order | 50.0% | 25.0% | 100.0% |" in text
    assert "| shipped | 75.0% | 50.0% | 100.0% |" in text
