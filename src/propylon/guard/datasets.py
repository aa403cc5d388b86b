"""The public datasets the classifier is trained and evaluated on, read from ``--data``.

All splits are deterministic (seeded by a hash of the text or index), so ``propylon guard
train`` reproduces the shipped weights and ``propylon eval guard`` always scores the same
held-back examples:

* deepset/prompt-injections: the train split trains, the test split evaluates.
* BIPIA (train split only is available): contexts whose index hashes into the held-back 30 %
  and attack categories held back by name never appear in training; evaluation inserts the
  held-back attacks into the held-back contexts (unseen contexts *and* unseen attack kinds,
  as in BIPIA's own disjoint train/test categories).
* NotInject sample: half trains (as benign), the other half evaluates false positives.
* Extra benign text that keeps false positives down: GPTCache's statements and SciFact claims
  (user side), SciFact abstracts (retrieved side).

Reading parquet needs ``pyarrow`` (in the ``dev`` extra); nothing here runs in the server.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Source = Literal["user", "retrieved"]

DEEPSET_TRAIN = "prompt-injections-deepset/train-00000-of-00001-9564e8b05b4757ab.parquet"
DEEPSET_TEST = "prompt-injections-deepset/test-00000-of-00001-701d16158af87368.parquet"
HELD_BACK_TEXT_ATTACKS = ("Content Creation", "Anagramming", "Persuasion", "Malware Distribution")
HELD_BACK_CODE_ATTACKS = ("Memory Scanning", "Network Propagation", "Cryptocurrency Mining")
BIPIA_TASKS = ("email", "table", "code")
SEED = 20261127


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    label: int  # 1 = injection
    source: Source
    origin: str  # which dataset and part it came from, for reports


def held_back(key: str, share: float = 0.3) -> bool:
    """Deterministic split: the same key always lands on the same side."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 < share


def deepset(data: Path, split: Literal["train", "test"]) -> list[Example]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "reading the deepset parquet files needs pyarrow: pip install 'propylon[dev]'"
        ) from exc
    path = data / (DEEPSET_TRAIN if split == "train" else DEEPSET_TEST)
    rows: list[dict[str, Any]] = pq.read_table(path).to_pylist()
    return [Example(r["text"], int(r["label"]), "user", f"deepset-{split}") for r in rows]


def notinject(data: Path, part: Literal["train", "eval"]) -> list[Example]:
    rows = json.loads((data / "notinject-sample" / "NotInject_one.json").read_text("utf-8"))
    want = part == "eval"
    return [
        Example(r["prompt"], 0, "user", f"notinject-{part}")
        for r in rows
        if held_back(r["prompt"], 0.5) == want
    ]


def extra_benign_prompts(data: Path, limit: int = 500) -> list[Example]:
    mock = json.loads((data / "paraphrase-pairs" / "mock_data.json").read_text("utf-8"))
    texts = [m["origin"] for m in mock]
    with (data / "scifact" / "queries.jsonl").open(encoding="utf-8") as f:
        texts += [json.loads(line)["text"] for line in f]
    rng = random.Random(SEED)
    rng.shuffle(texts)
    return [Example(t, 0, "user", "benign-extra") for t in texts[:limit]]


def benign_documents(data: Path, limit: int = 300) -> list[Example]:
    out: list[Example] = []
    with gzip.open(data / "scifact" / "corpus.jsonl.gz", "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            out.append(Example(f"{doc['title']}\n{doc['text']}", 0, "retrieved", "scifact"))
            if len(out) >= limit:
                break
    return out


def bipia_attacks(data: Path, task: str, part: Literal["train", "eval"]) -> list[str]:
    name = "code_attack_train.json" if task == "code" else "text_attack_train.json"
    held = HELD_BACK_CODE_ATTACKS if task == "code" else HELD_BACK_TEXT_ATTACKS
    by_category: dict[str, list[str]] = json.loads((data / "bipia-train" / name).read_text("utf-8"))
    want = part == "eval"
    return [a for cat, attacks in by_category.items() if (cat in held) == want for a in attacks]


def bipia_contexts(data: Path, task: str, part: Literal["train", "eval"]) -> list[str]:
    want = part == "eval"
    out: list[str] = []
    with (data / "bipia-train" / task / "train.jsonl").open(encoding="utf-8") as f:
        for index, line in enumerate(f):
            if held_back(f"{task}:{index}") != want:
                continue
            context = json.loads(line)["context"]
            out.append("\n".join(context) if isinstance(context, list) else str(context))
    return out


def insert_attack(context: str, attack: str, position: str) -> str:
    """BIPIA's insertion: the attack at the start, middle or end, as its own line when the
    context has lines."""
    pieces, joiner = context.split("\n"), "\n"
    if len(pieces) < 3:  # one-paragraph emails: between sentences, on the same line
        pieces, joiner = re.split(r"(?<=[.!?])\s+", context), " "
    at = {"start": 0, "middle": len(pieces) // 2, "end": len(pieces)}[position]
    return joiner.join([*pieces[:at], attack, *pieces[at:]])


def bipia_eval(data: Path, per_task: int = 60) -> list[Example]:
    """Held-back contexts, each clean (0) and with one held-back attack inserted (1)."""
    rng = random.Random(SEED)
    out: list[Example] = []
    for task in BIPIA_TASKS:
        contexts = bipia_contexts(data, task, "eval")[:per_task]
        attacks = bipia_attacks(data, task, "eval")
        for context in contexts:
            out.append(Example(context, 0, "retrieved", f"bipia-{task}"))
            position = rng.choice(("start", "middle", "end"))
            poisoned = insert_attack(context, rng.choice(attacks), position)
            out.append(Example(poisoned, 1, "retrieved", f"bipia-{task}"))
    return out
