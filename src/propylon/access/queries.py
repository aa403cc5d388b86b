"""The named SQL of the access part, read once from ``queries.sql``."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import LiteralString

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.MULTILINE)


@cache
def query(name: str) -> LiteralString:
    """The text of the query called ``name`` in ``queries.sql``."""
    # The file is ours and static: its queries are literal SQL, never built from input.
    return _all()[name]


@cache
def _all() -> dict[str, str]:
    text = resources.files(__package__).joinpath("queries.sql").read_text(encoding="utf-8")
    parts = _NAME.split(text)
    return {parts[i]: parts[i + 1].strip() for i in range(1, len(parts), 2)}
