"""BM25 keyword search computed in PostgreSQL, scored the way Lucene scores it.

Text is analysed here, once, the same way at index and at query time: lower case, words of
two or more word characters, Lucene's English stop words removed, Snowball English stems
(PyStemmer). The index is two tables (migration 0005): ``chunk_terms`` holds one posting per
(term, chunk) with its frequency and the chunk's length; ``bm25_stats`` holds each
collection's chunk count and total length. A search reads the postings of the query's terms
once — document frequencies are counted from those same rows, so they are never stale — and
sums, for every matching chunk,

    idf(t) · tf / (tf + k1 · (1 − b + b · |d| / avgdl)),   idf(t) = ln(1 + (N − df + ½) / (df + ½))

which is Lucene's BM25 (and ``bm25s``'s ``method="lucene"``), with k1 = 1.5, b = 0.75 by default.
Unlike ``ts_rank``, this has real IDF and length normalisation.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import Stemmer
from psycopg import AsyncConnection
from psycopg.rows import DictRow
from psycopg.types.json import Jsonb

from propylon.rag.queries import QUERIES

# Lucene's EnglishAnalyzer stop set.
STOP_WORDS = frozenset(
    "a an and are as at be but by for if in into is it no not of on or such that the their "  # noqa: SIM905
    "then there these they this to was will with".split()
)
_WORD = re.compile(r"(?u)\b\w\w+\b")


class Analyzer:
    """Text → index terms. Stems are cached: a corpus repeats most of its words."""

    def __init__(self) -> None:
        self._stemmer = Stemmer.Stemmer("english")
        self._cache: dict[str, str] = {}

    def terms(self, text: str) -> list[str]:
        words = [w for w in _WORD.findall(text.lower()) if w not in STOP_WORDS]
        cache = self._cache
        missing = [w for w in set(words) if w not in cache]
        if missing:
            if len(cache) > 500_000:
                cache.clear()
            cache.update(zip(missing, self._stemmer.stemWords(missing), strict=True))
        return [cache[w] for w in words]


@dataclass(frozen=True, slots=True)
class BM25Params:
    k1: float = 1.5
    b: float = 0.75


@dataclass(frozen=True, slots=True)
class KeywordHit:
    chunk_id: int
    score: float


class BM25Index:
    """Writes and searches the BM25 postings of a collection's chunks.

    Writers call ``add`` and ``remove_document`` inside the transaction that writes or deletes
    the chunks, so the index changes exactly when the chunks do.
    """

    def __init__(self, analyzer: Analyzer | None = None, params: BM25Params | None = None) -> None:
        self.analyzer = analyzer or Analyzer()
        self.params = params or BM25Params()

    def term_counts(self, text: str) -> tuple[Counter[str], int]:
        """The term frequencies of ``text`` and its length in terms."""
        terms = self.analyzer.terms(text)
        return Counter(terms), len(terms)

    async def add(
        self,
        conn: AsyncConnection[DictRow],
        collection_id: str,
        chunks: Sequence[tuple[int, Counter[str], int]],
    ) -> None:
        """Index ``(chunk_id, term_counts, length)`` rows; update the collection's statistics."""
        async with conn.cursor().copy(QUERIES["copy_chunk_terms"]) as copy:
            for chunk_id, counts, length in chunks:
                for term, tf in counts.items():
                    await copy.write_row((collection_id, term, chunk_id, tf, length))
        await conn.execute(
            QUERIES["bm25_stats_add"],
            {
                "collection_id": collection_id,
                "chunks": len(chunks),
                "terms": sum(length for _, _, length in chunks),
            },
        )

    async def remove_document(
        self, conn: AsyncConnection[DictRow], collection_id: str, document_id: str
    ) -> None:
        """Take a document's chunks out of the statistics (their postings go with the chunks)."""
        await conn.execute(
            QUERIES["bm25_stats_remove_document"],
            {"collection_id": collection_id, "document_id": document_id},
        )

    async def search(
        self,
        conn: AsyncConnection[DictRow],
        collection_id: str,
        query: str,
        *,
        limit: int = 10,
    ) -> list[KeywordHit]:
        """The ``limit`` best chunks of the collection for ``query``, best first."""
        return await self.search_terms(conn, collection_id, self.analyzer.terms(query), limit=limit)

    async def search_terms(
        self,
        conn: AsyncConnection[DictRow],
        collection_id: str,
        terms: list[str],
        *,
        limit: int = 10,
        metadata_filter: dict[str, Any] | None = None,
    ) -> list[KeywordHit]:
        """``search`` for terms already analysed (one analysis for several collections),
        optionally only over chunks whose document metadata contains ``metadata_filter``."""
        if not terms:
            return []
        params: dict[str, Any] = {
            "collection_id": collection_id,
            "terms": terms,
            "k1": self.params.k1,
            "b": self.params.b,
            "limit": limit,
        }
        if metadata_filter:
            params["filter"] = Jsonb(metadata_filter)
            top = QUERIES["bm25_top_filtered"]
        else:
            top = QUERIES["bm25_top"]
        cur = await conn.execute(QUERIES["bm25_scored"] + "\n" + top, params)
        return [
            KeywordHit(int(row["chunk_id"]), float(row["score"])) for row in await cur.fetchall()
        ]
