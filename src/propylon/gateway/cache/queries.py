"""The semantic cache's SQL, kept in ``queries.sql`` as ``-- name: x`` blocks."""

from __future__ import annotations

from typing import LiteralString

from propylon.db.named_queries import named_queries


def queries() -> dict[str, LiteralString]:
    """Every named query of ``queries.sql``, read once."""
    return named_queries("propylon.gateway.cache")
