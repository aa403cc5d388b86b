"""Fit the best retrieved chunks into a token budget.

1. Hits of the same document whose character ranges overlap or touch (neighbouring chunks,
   which share their overlap) are merged into one passage: ``documents.text[start:end]`` over
   their union, scored by its best chunk. Merging removes the repeated overlap and gives the
   model whole paragraphs instead of fragments.
2. Passages are taken in order of relevance while their fenced blocks fit the budget
   (token-counted with the answer model's tokenizer); a merged passage that does not fit is
   replaced by its best chunk alone when that fits. Order in the prompt is by relevance, so
   source ``[1]`` is the best.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from propylon.rag.search import SearchHit

CountTokens = Callable[[str], int]

MERGE_GAP = 2  # characters between two chunks still counted as touching (a line break, a space)


@dataclass(slots=True)
class Passage:
    """A contiguous span of one document: ``text == documents.text[char_start:char_end]``."""

    document_id: str
    collection_id: str
    char_start: int
    char_end: int
    text: str
    score: float
    chunks: list[SearchHit] = field(default_factory=list)
    external_id: str | None = None
    filename: str | None = None

    @property
    def page(self) -> int | None:
        return min((c.page for c in self.chunks if c.page is not None), default=None)

    @property
    def chunk_ids(self) -> list[int]:
        return [c.chunk_id for c in self.chunks]

    def chunk_at(self, offset: int) -> SearchHit | None:
        """The chunk of this passage containing the document offset ``offset``."""
        for chunk in sorted(self.chunks, key=lambda c: c.char_start):
            if chunk.char_start <= offset < chunk.char_end:
                return chunk
        return None


def merge_neighbours(hits: Sequence[SearchHit]) -> list[Passage]:
    """Group overlapping or touching hits of each document; passages by relevance."""
    by_document: dict[str, list[SearchHit]] = {}
    for hit in hits:
        by_document.setdefault(hit.document_id, []).append(hit)
    passages: list[Passage] = []
    for group in by_document.values():
        group.sort(key=lambda h: h.char_start)
        current: Passage | None = None
        for hit in group:
            if current is not None and hit.char_start <= current.char_end + MERGE_GAP:
                current.char_end = max(current.char_end, hit.char_end)
                current.score = max(current.score, hit.score)
                current.chunks.append(hit)
                continue
            current = Passage(
                hit.document_id,
                hit.collection_id,
                hit.char_start,
                hit.char_end,
                hit.text,
                hit.score,
                [hit],
                hit.external_id,
                hit.filename,
            )
            passages.append(current)
    passages.sort(key=lambda p: (-p.score, p.document_id, p.char_start))
    return passages


def single(hit: SearchHit) -> Passage:
    return Passage(
        hit.document_id,
        hit.collection_id,
        hit.char_start,
        hit.char_end,
        hit.text,
        hit.score,
        [hit],
        hit.external_id,
        hit.filename,
    )


@dataclass(frozen=True, slots=True)
class Budgeted:
    passages: list[Passage]
    tokens: int
    dropped: int  # passages that did not fit


def fit(
    passages: Sequence[Passage],
    budget: int,
    count: CountTokens,
    render: Callable[[Passage, int], str],
) -> Budgeted:
    """The most relevant passages whose rendered blocks fit ``budget`` tokens together.

    ``render(passage, number)`` is the passage as it will appear in the prompt (its fenced
    block), so the count includes the fence. Passages need their final ``text``.
    """
    chosen: list[Passage] = []
    used = 0
    dropped = 0
    for passage in passages:
        candidates = [passage]
        if len(passage.chunks) > 1:
            best = max(passage.chunks, key=lambda c: c.score)
            candidates.append(single(best))
        for candidate in candidates:
            tokens = count(render(candidate, len(chosen) + 1)) + 2  # the blank line between
            if used + tokens <= budget:
                chosen.append(candidate)
                used += tokens
                break
        else:
            dropped += 1
    return Budgeted(chosen, used, dropped)
