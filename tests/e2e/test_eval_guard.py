"""`propylon eval guard` runs as a real process and prints its table (a small smoke run)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.processes import run_propylon

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@pytest.mark.skipif(not DATA.is_dir(), reason="needs ../shared/data")
async def test_eval_guard_prints_accuracy_precision_recall_and_fpr(tmp_path: Path) -> None:
    docs = tmp_path / "benchmarks.md"
    docs.write_text("# Benchmarks\n\nSomeone else's section.\n")
    out = await run_propylon(
        "eval", "guard", "--data", str(DATA), "--limit", "6", "--output", str(docs)
    )
    assert "| set | n | accuracy | balanced acc. | precision | recall | FPR |" in out
    for name in ("deepset test (user)", "BIPIA held-back (retrieved)", "NotInject", "all sets"):
        assert name in out
    written = docs.read_text()
    assert "Someone else's section." in written
    assert "## Prompt-injection detection" in written
