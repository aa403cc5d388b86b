"""The named SQL of the job queue, read once from ``queries.sql``."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def query(name: str) -> str:
    """The text of the query called ``name`` in ``queries.sql``."""
    return _all()[name]


@cache
def _all() -> dict[str, str]:
    text = resources.files(__package__).joinpath("queries.sql").read_text(encoding="utf-8")
    parts = _NAME.split(text)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}
