"""The SQL of search, answers and conversations, from ``retrieval.sql``."""

from __future__ import annotations

from propylon.db.named_queries import named_queries

QUERIES = named_queries("propylon.rag", "retrieval.sql")
