"""The SQL of sources, from ``queries.sql`` (``-- name: x`` sections)."""

from __future__ import annotations

from propylon.db.named_queries import named_queries

QUERIES = named_queries("propylon.rag.sources")
