"""Structure-aware chunking: headings → paragraphs → sentences → words, to a token budget.

A document is cut into sections at its headings; each chunk stays inside one section and
carries the section's heading path. Within a section, whole blocks (paragraphs, tables) are
packed while they fit; a block too big for the budget is cut at sentences (a table at its
rows, so no row is split while it fits), and a sentence or row too big at words. Consecutive
chunks of a section share up to ``overlap_tokens`` of whole sentences or blocks, so a
statement cut at a boundary is whole in one of them.

Every chunk is a contiguous slice ``text[start:end]`` of the extracted text, so its offsets are
exact by construction, and its page is the page that slice starts on; its ``location`` names
the pages of formats without printed pages (slides, row ranges, chapters, messages).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from propylon.local.sentences import split_sentences
from propylon.rag.parsing.document import ParsedDocument, Span

CountTokens = Callable[[str], int]
_WORD = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class ChunkingConfig:
    """How a collection cuts its documents; stored with the collection."""

    max_tokens: int = 200
    overlap_tokens: int = 32

    def __post_init__(self) -> None:
        if self.max_tokens < 16:
            raise ValueError("max_tokens must be at least 16")
        if not 0 <= self.overlap_tokens < self.max_tokens // 2 + 1:
            raise ValueError("overlap_tokens must be between 0 and half of max_tokens")


@dataclass(frozen=True, slots=True)
class Chunk:
    ordinal: int
    start: int
    end: int
    text: str
    page: int | None
    page_end: int | None
    heading_path: tuple[str, ...]
    token_count: int
    page_breaks: tuple[int, ...] = ()  # document offsets inside the chunk where a page begins
    location: str | None = None  # "slide 3", "sheet Sales, rows 2-41": see ParsedDocument
    ocr_confidence: float | None = None  # set when the chunk's text was read from an image


@dataclass(slots=True)
class _Section:
    path: tuple[str, ...]
    spans: list[Span] = field(default_factory=list)

    @property
    def has_body(self) -> bool:
        return any(span.kind != "heading" for span in self.spans)


@dataclass(frozen=True, slots=True)
class _Atom:
    start: int
    end: int
    tokens: int


class Chunker:
    """Cuts a ``ParsedDocument`` into chunks with ``config``, counting with ``count_tokens``."""

    def __init__(self, config: ChunkingConfig, count_tokens: CountTokens) -> None:
        self._config = config
        self._count = count_tokens

    def chunk(self, document: ParsedDocument) -> list[Chunk]:
        chunks: list[Chunk] = []
        for section in _sections(document):
            for start, end in self._pack(self._atoms(document.text, section.spans)):
                text = document.text[start:end]
                page, page_end = document.page_at(start), document.page_at(end - 1)
                chunks.append(
                    Chunk(
                        ordinal=len(chunks),
                        start=start,
                        end=end,
                        text=text,
                        page=page,
                        page_end=page_end,
                        heading_path=section.path,
                        token_count=self._count(text),
                        page_breaks=tuple(s for s in document.page_starts if start < s < end),
                        location=document.location(page, page_end),
                        ocr_confidence=document.ocr_confidence(page, page_end),
                    )
                )
        return chunks

    def _atoms(self, text: str, spans: list[Span]) -> list[_Atom]:
        """The largest pieces of the section (blocks, else sentences, else words) that fit."""
        budget = self._config.max_tokens
        atoms: list[_Atom] = []
        for span in spans:
            tokens = self._count(text[span.start : span.end])
            if tokens <= budget:
                atoms.append(_Atom(span.start, span.end, tokens))
                continue
            pieces = _rows if span.kind == "table" else split_sentences
            for s_start, s_end in pieces(text[span.start : span.end]):
                start, end = span.start + s_start, span.start + s_end
                tokens = self._count(text[start:end])
                if tokens <= budget:
                    atoms.append(_Atom(start, end, tokens))
                else:
                    atoms.extend(self._words(text, start, end))
        return atoms

    def _words(self, text: str, start: int, end: int) -> list[_Atom]:
        budget = self._config.max_tokens
        atoms: list[_Atom] = []
        piece_start, piece_tokens, piece_end = start, 0, start
        for word in _WORD.finditer(text, start, end):
            tokens = self._count(word.group()) + 1
            if piece_tokens and piece_tokens + tokens > budget:
                atoms.append(_Atom(piece_start, piece_end, piece_tokens))
                piece_start, piece_tokens = word.start(), 0
            if tokens > budget:  # one "word" longer than the budget: cut it by characters
                atoms.extend(self._characters(text, word.start(), word.end()))
                piece_start, piece_tokens, piece_end = word.end(), 0, word.end()
                continue
            piece_tokens += tokens
            piece_end = word.end()
        if piece_tokens:
            atoms.append(_Atom(piece_start, piece_end, piece_tokens))
        return atoms

    def _characters(self, text: str, start: int, end: int) -> list[_Atom]:
        step = self._config.max_tokens  # a token is at least one character
        return [
            _Atom(s, min(s + step, end), self._count(text[s : min(s + step, end)]))
            for s in range(start, end, step)
        ]

    def _pack(self, atoms: list[_Atom]) -> list[tuple[int, int]]:
        """Greedy runs of atoms within the budget, each next run backing up by the overlap."""
        budget, overlap = self._config.max_tokens, self._config.overlap_tokens
        out: list[tuple[int, int]] = []
        first = 0
        while first < len(atoms):
            last, used = first, atoms[first].tokens
            while last + 1 < len(atoms) and used + 1 + atoms[last + 1].tokens <= budget:
                last += 1
                used += 1 + atoms[last].tokens
            out.append((atoms[first].start, atoms[last].end))
            if last + 1 >= len(atoms):
                break
            nxt, shared = last + 1, 0
            while nxt - 1 > first and shared + atoms[nxt - 1].tokens <= overlap:
                nxt -= 1
                shared += atoms[nxt].tokens
            first = nxt
        return out


def _rows(table: str) -> list[tuple[int, int]]:
    """A Markdown table's rows: one a line."""
    out: list[tuple[int, int]] = []
    start = 0
    for line in table.split("\n"):
        if line.strip():
            out.append((start, start + len(line)))
        start += len(line) + 1
    return out


def _sections(document: ParsedDocument) -> list[_Section]:
    """Sections at headings; a heading with no text of its own joins the section after it."""
    sections: list[_Section] = []
    stack: list[tuple[int, str]] = []
    current = _Section(())
    for span in document.spans:
        if span.kind == "heading":
            if current.has_body:
                sections.append(current)
                current = _Section((), [])
            level = span.level or 1
            while stack and stack[-1][0] >= level:
                stack.pop()
            title = " ".join(document.text[span.start : span.end].split())
            stack.append((level, title))
            current.path = tuple(t for _, t in stack)
        current.spans.append(span)
    if current.spans:
        sections.append(current)
    return sections
