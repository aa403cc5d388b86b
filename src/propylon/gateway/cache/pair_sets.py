"""The labelled question pairs the semantic cache's judge is fitted and evaluated on.

Every pair says whether serving the answer of ``b`` to ``a`` is right (label 1: same question,
same answer) or wrong (0). Each pair belongs to one *source* (where the texts come from) and to
the ``train`` or ``dev`` split of it; evaluation holds whole sources out (``evaluation.py``).

Sources, all under ``../shared/data`` (see its README for licences):

* ``gptcache``: GPTCache's 999 (original, paraphrase) pairs are positives; each paraphrase
  against the most similar *other* original (by word overlap) is a negative, leaving out the
  originals that reword the own one (word Jaccard >= 0.5: the set repeats its answers).
* ``sts``: STS Benchmark train+dev, score >= 4 positive, <= 2 negative.
* ``banking77``: same intent (same canned answer) or not, with TF-IDF hard negatives.
* ``clinc150``: lexically close queries of different intents (all negative).
* ``hans``: same words, different meaning (negative) and active/passive paraphrases.
* ``perturbed``: a number changed or swapped (negative), a number spelled out (positive).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Split = Literal["train", "dev"]

SOURCES = ("gptcache", "sts", "banking77", "clinc150", "hans", "perturbed")

LABELS = {
    "gptcache": "same answer: a reworded question/statement and its original; negatives are the "
    "nearest other original by word overlap, some of which restate the same fact",
    "sts": "same meaning of two sentences (news, captions, forums; not questions): STS score "
    ">= 4 vs <= 2",
    "banking77": "same *intent* class, not same answer: positives are random same-intent "
    "questions (88 % below cosine 0.80), and near-identical wordings sit in different intents",
    "clinc150": "different intent only (no positives): wrong hits counted, hit rate undefined",
    "hans": "adversarial NLI sentences (same words, other meaning) and active/passive rewordings",
    "perturbed": "rule-made: a number changed or arguments swapped (different), a number spelled "
    "out (same)",
}
"""What each source's label means for a cache. The goal (wrong hits <= 1 %, answered >= 30 %)
is meaningful where it says *same answer* or *same meaning* and there are positives."""
SAME_ANSWER = frozenset({"gptcache", "sts", "perturbed", "hans"})
HANS_DEV = re.compile(r"^(cn_|ln_passive)")  # the source's suggested dev subcases


@dataclass(frozen=True, slots=True)
class Pair:
    a: str
    b: str
    label: int
    source: str
    split: Split
    kind: str = ""  # how the pair was made (the source's ``pair_type``, or ours below)


def load(data: Path) -> list[Pair]:
    """All pairs of the sources found under ``data`` (missing folders are skipped)."""
    pairs: list[Pair] = []
    pairs += _gptcache(data / "paraphrase-pairs" / "mock_data.json")
    pairs += _sts(data / "paraphrase-pairs")
    for folder, source in (
        ("pairs-banking77-intent", "banking77"),
        ("pairs-clinc150-intent", "clinc150"),
        ("pairs-hans-adversarial", "hans"),
        ("pairs-perturbed-numbers-swaps", "perturbed"),
    ):
        path = data / folder / "pairs.jsonl"
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            if source == "hans":
                split: Split = "dev" if HANS_DEV.match(row.get("subcase", "")) else "train"
            else:
                split = "dev" if row.get("split") == "dev" else "train"
            kind = str(row.get("pair_type", ""))
            pairs.append(Pair(row["a"], row["b"], int(row["label"]), source, split, kind))
    return pairs


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9]+", text.lower()))


def _jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a | b else 1.0


def _gptcache(path: Path) -> list[Pair]:
    if not path.is_file():
        return []
    mock = json.loads(path.read_text(encoding="utf-8"))
    originals = [m["origin"] for m in mock]
    words = [_words(o) for o in originals]
    normal = [" ".join(sorted(w)) for w in words]
    out: list[Pair] = []
    for i, m in enumerate(mock):
        split: Split = "dev" if i % 5 == 0 else "train"
        out.append(Pair(m["similar"], m["origin"], 1, "gptcache", split, "paraphrase"))
        query = _words(m["similar"])
        best, best_j = -1.0, -1
        for j, w in enumerate(words):
            if normal[j] == normal[i] or _jaccard(words[i], w) >= 0.5:
                continue
            score = _jaccard(query, w)
            if score > best:
                best, best_j = score, j
        if best_j >= 0:
            out.append(Pair(m["similar"], originals[best_j], 0, "gptcache", split, "nearest_other"))
    return out


def _sts(folder: Path) -> list[Pair]:
    out: list[Pair] = []
    for name, split in (("sts-train.csv", "train"), ("sts-dev.csv", "dev")):
        path = folder / name
        if not path.is_file():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            columns = line.split("\t")  # bare quotes inside: no csv quoting
            if len(columns) < 7:
                continue
            score = float(columns[4])
            if score >= 4 or score <= 2:
                label = 1 if score >= 4 else 0
                kind = "score>=4" if label else "score<=2"
                out.append(Pair(columns[5], columns[6], label, "sts", split, kind))  # type: ignore[arg-type]
    return out
