"""``propylon eval ingestion``: how much of a document's known content survives parsing.

The corpus is built here, from seeded sentences and tables (``sample_documents``): text-layer
PDFs, a two-column PDF, PDFs with ruled tables, scanned PDF pages rendered from known lines,
a presentation, a workbook and an e-book. Each is parsed as the worker parses it (in the
sandboxed process) and chunked with the default chunking.

* **Text recall**: of the known words (lower-cased runs of letters and digits, counted with
  their repeats), the share found in the extracted text.
* **Table-cell recall**: of the known table cells, the share found as a cell of a Markdown
  table row in the extracted text (so a table that came out as a run of words scores 0).
* **Pages/s** per stage: parse (process start, format sniffing, parser, OCR) and chunk.
* **Retrieval nDCG@10**: questions made from each document's known text (a window of
  ``QUESTION_WORDS`` words, a third of them dropped at random) are searched with keyword
  search itself (``BM25Index.search``: the chunks of the whole corpus indexed in a throw-away
  collection in PostgreSQL, as ``propylon eval bm25`` does, default k1 and b); a document
  ranks by its best chunk and the question's own document is the one relevant answer. Words
  lost or garbled by parsing (OCR, tables) cost rank here.

Nothing here was tuned on this corpus's sentences: the OCR settings were chosen on other
lines, and the corpus's words come from a seeded generator.
"""

from __future__ import annotations

import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from propylon import report_section
from propylon.db.database import Database
from propylon.rag.bm25 import BM25Index
from propylon.rag.bm25_eval import index_corpus, ndcg_at_k, throwaway_collection
from propylon.rag.chunking import Chunker, ChunkingConfig
from propylon.rag.parsing import ParsedDocument, extract

SECTION = "ingestion-quality"
_WORD = re.compile(r"[a-z0-9]+")
_VOCABULARY_TEXT = """
river harbour lantern morning evening village market garden winter summer bridge
window letter doctor teacher farmer station engine water stone forest mountain
island number report season silver golden quiet early later small large green yellow
north south east west counted carried opened closed walked painted found kept sold
bought ship road field house school church table paper cloud storm light night
seventeen twelve three hundred people family friend captain keeper market
"""
_VOCABULARY = tuple(_VOCABULARY_TEXT.split())
TARGETS = {"pdf-text": 0.98, "pdf-scanned": 0.90}
CELL_TARGET = 0.90
QUESTIONS_PER_DOCUMENT = 4
QUESTION_WORDS = 9


@dataclass(frozen=True, slots=True)
class Sample:
    kind: str
    data: bytes
    text: str  # everything the document says, tables included
    cells: list[str] = field(default_factory=list)


@dataclass(slots=True)
class KindScore:
    kind: str
    documents: int = 0
    pages: int = 0
    words: int = 0
    words_found: int = 0
    cells: int = 0
    cells_found: int = 0
    parse_s: float = 0.0
    chunk_s: float = 0.0
    questions: int = 0
    ndcg_sum: float = 0.0

    @property
    def ndcg(self) -> float | None:
        return self.ndcg_sum / self.questions if self.questions else None

    @property
    def text_recall(self) -> float:
        return self.words_found / self.words if self.words else 1.0

    @property
    def cell_recall(self) -> float | None:
        return self.cells_found / self.cells if self.cells else None


def _sentences(rng: random.Random, count: int, words: int = 8) -> list[str]:
    return [
        " ".join(rng.choice(_VOCABULARY) for _ in range(words)).capitalize() + "."
        for _ in range(count)
    ]


def _table(rng: random.Random, rows: int, cols: int) -> list[list[str]]:
    header = [f"{rng.choice(_VOCABULARY).title()} {c + 1}" for c in range(cols)]
    body = [
        [rng.choice(_VOCABULARY) if c == 0 else str(rng.randint(10, 9999)) for c in range(cols)]
        for _ in range(rows)
    ]
    return [header, *body]


def build_corpus(seed: int = 24, scanned_pages: int = 4) -> list[Sample]:
    """The evaluation's documents; ``scanned_pages`` bounds the slowest part (OCR)."""
    from propylon.rag import sample_documents as make

    rng = random.Random(seed)
    samples: list[Sample] = []
    for _ in range(3):
        pages = [_sentences(rng, 30, 9) for _ in range(3)]
        text = " ".join(" ".join(p) for p in pages)
        samples.append(Sample("pdf-text", make.pdf(pages), text))
    for _ in range(2):
        left, right = _sentences(rng, 25, 5), _sentences(rng, 25, 5)
        text = " ".join(left + right)
        samples.append(Sample("pdf-multicolumn", make.two_column_pdf(left, right), text))
    for _ in range(2):
        rows = _table(rng, 8, 4)
        before, after = _sentences(rng, 1)[0], _sentences(rng, 1)[0]
        text = " ".join([before, *[" ".join(r) for r in rows], after])
        data = make.pdf_with_table(before, rows, after)
        samples.append(Sample("pdf-table", data, text, [c for r in rows for c in r]))
    for _ in range(max(0, scanned_pages)):
        lines = _sentences(rng, 6, 7)
        samples.append(Sample("pdf-scanned", make.scanned_pdf([lines]), " ".join(lines)))
    titles = [s[:-1].title() for s in _sentences(rng, 4, 3)]
    slides = list(zip(titles, _sentences(rng, 4), _sentences(rng, 4), strict=True))
    table = _table(rng, 4, 3)
    deck_text = " ".join(" ".join(s) for s in slides) + " " + " ".join(" ".join(r) for r in table)
    samples.append(
        Sample("pptx", make.presentation(slides, table), deck_text, [c for r in table for c in r])
    )
    sheet = _table(rng, 120, 4)
    samples.append(
        Sample(
            "xlsx",
            make.workbook({"Data": sheet}),
            " ".join(" ".join(r) for r in sheet),
            [c for r in sheet for c in r],
        )
    )
    chapters = [(s[:-1].title(), " ".join(_sentences(rng, 12))) for s in _sentences(rng, 5, 3)]
    samples.append(Sample("epub", make.epub(chapters), " ".join(f"{t} {b}" for t, b in chapters)))
    return samples


def _words(text: str) -> Counter[str]:
    return Counter(_WORD.findall(text.lower()))


def _table_cells(text: str) -> Counter[str]:
    cells: Counter[str] = Counter()
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and line.endswith("|") and not line.startswith("| ---"):
            cells.update(" ".join(c.split()).lower() for c in line[1:-1].split("|"))
    return cells


async def evaluate(
    samples: list[Sample], count_tokens: Callable[[str], int], database: Database, seed: int = 24
) -> list[KindScore]:
    """Parse and chunk each sample, scoring it against what it is known to say, then search
    the chunks of them all (in a throw-away collection of ``database``) with questions about
    each."""
    chunker = Chunker(ChunkingConfig(), count_tokens)
    scores: dict[str, KindScore] = {}
    chunks: dict[str, list[str]] = {}  # sample index -> its chunks' texts
    for index, sample in enumerate(samples):
        score = scores.setdefault(sample.kind, KindScore(sample.kind))
        started = time.perf_counter()
        parsed: ParsedDocument = await extract(sample.data)
        parsed_at = time.perf_counter()
        chunks[str(index)] = [chunk.text for chunk in chunker.chunk(parsed)]
        score.parse_s += parsed_at - started
        score.chunk_s += time.perf_counter() - parsed_at
        score.documents += 1
        score.pages += parsed.page_count or 1
        known, got = _words(sample.text), _words(parsed.text)
        score.words += sum(known.values())
        score.words_found += sum(min(n, got[w]) for w, n in known.items())
        if sample.cells:
            found = _table_cells(parsed.text)
            wanted = Counter(" ".join(c.split()).lower() for c in sample.cells)
            score.cells += sum(wanted.values())
            score.cells_found += sum(min(n, found[c]) for c, n in wanted.items())
    bm25 = BM25Index()
    async with throwaway_collection(database, bm25, "ingestion") as (store, collection_id):
        chunk_to_doc = await index_corpus(store, collection_id, chunks)
        rng = random.Random(seed + 1)
        async with database.connection() as conn:
            for index, sample in enumerate(samples):
                score = scores[sample.kind]
                for question in _questions(sample.text, rng):
                    hits = await bm25.search(conn, collection_id, question, limit=_CHUNKS_READ)
                    # Documents by their best chunk, best first.
                    ranked = list(dict.fromkeys(chunk_to_doc[hit.chunk_id] for hit in hits))
                    score.questions += 1
                    score.ndcg_sum += ndcg_at_k(ranked, {str(index): 1})
    return list(scores.values())


_CHUNKS_READ = 1000  # best chunks read per question: enough to rank the best 10 documents


def _questions(text: str, rng: random.Random) -> list[str]:
    """Windows of the known text with a third of their words dropped."""
    words = _WORD.findall(text.lower())
    if len(words) < QUESTION_WORDS:
        return []
    out = []
    for _ in range(QUESTIONS_PER_DOCUMENT):
        start = rng.randrange(len(words) - QUESTION_WORDS + 1)
        window = words[start : start + QUESTION_WORDS]
        keep = sorted(rng.sample(range(QUESTION_WORDS), QUESTION_WORDS * 2 // 3))
        out.append(" ".join(window[i] for i in keep))
    return out


def render_markdown(rows: list[KindScore], *, when: str, host: str) -> str:
    lines = [
        "## Ingestion quality (`propylon eval ingestion`)",
        "",
        f"Measured {when} on {host}. A corpus the repository builds itself from seeded "
        "sentences and tables (`src/propylon/rag/ingestion_eval.py`), parsed in the sandboxed "
        "parsing process as the worker parses, then chunked (200 tokens). Text recall: known "
        "words found in the extracted text; table-cell recall: known cells found as cells of "
        "a Markdown table. Pages/s per stage: parse (process start, sniffing, parser, OCR) "
        "and chunk; spreadsheets count a page per row range, e-books a page per chapter. "
        "Every document is parsed in a fresh process, so each scanned document pays the OCR "
        "engine's load (about 1.5 s) and the run's first document (pdf-text) the fork "
        "server's start; its first chunking loads the tokenizer. Reproduce: "
        "`propylon eval ingestion --output docs/benchmarks.md` (`--scanned-pages`, `--seed`). "
        f"Retrieval: {QUESTIONS_PER_DOCUMENT} questions per document, each "
        f"{QUESTION_WORDS * 2 // 3} of {QUESTION_WORDS} consecutive words of its known text, "
        "searched with keyword search itself (PostgreSQL BM25 over the chunks of the whole "
        "corpus, indexed in a throw-away collection; default k1 and b, nothing tuned on this "
        "corpus); nDCG@10 with the "
        "question's own document as the one relevant answer. The corpus draws its words from a "
        "vocabulary of about 90, so documents share most of their words and only the "
        "combination tells them apart; a question whose window straddles two chunks (a page "
        "or chapter boundary; the e-book's chapters are short) is split between them, which "
        "costs rank even at 100 % text recall. nDCG has no target: it is measured, not tuned.",
        "",
        "| kind | docs | pages | text recall | table-cell recall | nDCG@10 | parse pages/s "
        "| chunk pages/s | target |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        cell = "–" if row.cell_recall is None else f"{row.cell_recall:.1%}"
        ndcg = "–" if row.ndcg is None else f"{row.ndcg:.3f}"
        target = _target(row)
        lines.append(
            f"| {row.kind} | {row.documents} | {row.pages} | {row.text_recall:.1%} | {cell} | "
            f"{ndcg} | "
            f"{row.pages / row.parse_s:.1f} | {row.pages / max(row.chunk_s, 1e-9):.0f} | "
            f"{target} |"
        )
    return "\n".join(lines) + "\n"


def _target(row: KindScore) -> str:
    out: list[str] = []
    goal = TARGETS.get(row.kind)
    if goal is not None:
        out.append(f"text ≥ {goal:.0%}: {'met' if row.text_recall >= goal else 'MISSED'}")
    if row.cell_recall is not None:
        met = row.cell_recall >= CELL_TARGET
        out.append(f"cells ≥ {CELL_TARGET:.0%}: {'met' if met else 'MISSED'}")
    return "; ".join(out) or "–"


def passed(rows: list[KindScore]) -> bool:
    return all("MISSED" not in _target(row) for row in rows)


def write_section(path: Path, section: str) -> None:
    report_section.write_section(path, section, SECTION)
