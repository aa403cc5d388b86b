"""The SQL of search, answers and conversations, loaded once from ``retrieval.sql``."""

from __future__ import annotations

import re
from importlib.resources import files
from typing import LiteralString, cast

_NAME = re.compile(r"^-- name: (\w+)\s*$", re.M)


def _load() -> dict[str, LiteralString]:
    text = files("propylon.rag").joinpath("retrieval.sql").read_text(encoding="utf-8")
    parts = _NAME.split(text)
    # Our own static file: literal SQL, never built from input.
    return {
        name: cast(LiteralString, body.strip())
        for name, body in zip(parts[1::2], parts[2::2], strict=True)
    }


QUERIES: dict[str, LiteralString] = _load()
