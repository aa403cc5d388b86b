"""`propylon eval guard` runs as a real process and prints its tables (a small smoke run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import complete_propylon, run_propylon
from tests.support.shared_data import SHARED_DATA


@pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data")
async def test_eval_guard_reports_held_out_sources_lengths_and_documents(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nSomeone else's section.\n")
    out = await run_propylon(
        "eval",
        "guard",
        "--data",
        str(SHARED_DATA),
        "--per-source",
        "8",
        "--limit",
        "4",
        "--output",
        str(docs),
    )
    assert "| held-out source | benign | attacks | balanced acc. | recall |" in out
    for name in ("| deepset |", "| jailbreakbench |", "| hard-negatives |", "| all sources |"):
        assert name in out
    for bucket in ("| < 200 |", "| 200–1,000 |", "| > 1,000 |"):
        assert bucket in out
    # Scored as served (``guard.user_int8``): int8 kernels, exact near a threshold, beside
    # the exact reading alone.
    assert "the held-out texts are read as `guard.user_int8`" in out
    assert "| held-out source | measure | exact | as served | loss (points) |" in out
    assert "Largest loss as served on any source:" in out
    assert "The largest difference between the two readings" in out  # REREAD_MARGIN's basis
    assert "| BIPIA held-back (emails, tables, code) |" in out
    assert "clean development documents" in out, "the rule for exclude_risk_at's default"
    written = docs.read_text()
    assert "Someone else's section." in written
    assert "## Prompt-injection detection, unseen sources" in written
    assert "## Attacks inside documents, server defaults" in written
    assert "<!-- bench:guard-documents:start -->" in written


async def test_a_data_directory_without_the_datasets_is_one_line_not_a_traceback(
    tmp_path: Path,
) -> None:
    done = await complete_propylon("eval", "guard", "--data", str(tmp_path))
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "error: no such file:" in done.stderr and str(tmp_path) in done.stderr
