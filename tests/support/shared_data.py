"""``../shared/data`` beside the repository root: the public datasets some tests read when
present (each test says what it does without them)."""

from __future__ import annotations

from pathlib import Path

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
