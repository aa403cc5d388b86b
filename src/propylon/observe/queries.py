"""The named SQL of the observe part, read once from ``queries.sql``."""

from __future__ import annotations

from typing import LiteralString

from propylon.db.named_queries import named_queries


def query(name: str) -> LiteralString:
    """The text of the query called ``name`` in ``queries.sql``."""
    return named_queries("propylon.observe")[name]
