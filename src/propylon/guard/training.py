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

from propylon.guard import datasets, heuristics
from propylon.guard.classifier import Head, InjectionClassifier
from propylon.guard.features import FEATURE_VERSION, lexical_features, units
from propylon.local.minilm import MiniLMEmbedder

L2 = 1e-4
STEPS = 600
LEARNING_RATE = 0.05
FOLDS = 5
SEED = 20261127
# Out-of-fold false-positive rates the thresholds are set for, per benign window. A user
# message is one window, so 1 % per window stays within the 3 % goal; a retrieved document is
# read in about 15 short windows, so each window is held to 3 % / 15 = 0.2 %.
TARGET_FPR = {
    "user": {"flag": 0.01, "block": 0.002},
    "retrieved": {"flag": 0.002, "block": 0.0005},
}
BIPIA_TRAIN_CONTEXTS = {"email": 50, "table": 200, "code": 50}


@dataclass(frozen=True, slots=True)
class Window:
    text: str
    label: int
    weight: float
    origin: str


def user_windows(data: Path) -> list[Window]:
    examples = datasets.deepset(data, "train") + datasets.extra_benign_prompts(data)
    out = [Window(w, e.label, 1.0, e.origin) for e in examples for w in units(e.text, "user", 32)]
    # Benign prompts full of trigger words are rare and precious: weigh them up.
    out += [
        Window(w, 0, 3.0, e.origin)
        for e in datasets.notinject(data, "train")
        for w in units(e.text, "user", 32)
    ]
    # A task for the assistant is an injection inside a document but a normal user request.
    for task in ("email", "code"):
        out += [
            Window(" ".join(a.split()), 0, 1.0, f"bipia-attack-as-user-{task}")
            for a in datasets.bipia_attacks(data, task, "train")
        ]
    return out


def retrieved_windows(data: Path) -> list[Window]:
    rng = random.Random(datasets.SEED)
    out: list[Window] = []
    injections = [e.text for e in datasets.deepset(data, "train") if e.label == 1]
    for task, limit in BIPIA_TRAIN_CONTEXTS.items():
        attacks = datasets.bipia_attacks(data, task, "train")
        for context in datasets.bipia_contexts(data, task, "train")[:limit]:
            out += [Window(p, 0, 1.0, f"bipia-{task}") for p in units(context, "retrieved", 64)]
            for pool in (attacks, attacks, injections):
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
    return out


def fit_logistic(
    x: NDArray[np.float32], y: NDArray[np.float32], sample_weight: NDArray[np.float32]
) -> Head:
    """L2-regularised logistic regression, class-balanced, full-batch Adam."""
    positives = float(sample_weight[y == 1].sum())
    negatives = float(sample_weight[y == 0].sum())
    balance = np.where(y == 1, 0.5 / positives, 0.5 / negatives).astype(np.float32)
    weight = sample_weight * balance
    w = np.zeros(x.shape[1], dtype=np.float64)
    b = 0.0
    m_w, v_w = np.zeros_like(w), np.zeros_like(w)
    m_b = v_b = 0.0
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    x64 = x.astype(np.float64)
    for step in range(1, STEPS + 1):
        p = 1.0 / (1.0 + np.exp(-np.clip(x64 @ w + b, -30, 30)))
        error = (p - y) * weight
        grad_w = x64.T @ error + L2 * w
        grad_b = float(error.sum())
        m_w = beta1 * m_w + (1 - beta1) * grad_w
        v_w = beta2 * v_w + (1 - beta2) * grad_w**2
        m_b = beta1 * m_b + (1 - beta1) * grad_b
        v_b = beta2 * v_b + (1 - beta2) * grad_b**2
        correction1, correction2 = 1 - beta1**step, 1 - beta2**step
        w -= LEARNING_RATE * (m_w / correction1) / (np.sqrt(v_w / correction2) + eps)
        b -= LEARNING_RATE * (m_b / correction1) / (np.sqrt(v_b / correction2) + eps)
    return Head(w.astype(np.float32), b)


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
        scores[held] = fit_logistic(x[~held], y[~held], sample_weight[~held]).probability(x[held])
    benign = scores[y == 0]
    out: dict[str, float] = {}
    for name, rate in target.items():
        grid = [t / 100 for t in range(30, 100)]
        out[name] = next((t for t in grid if float((benign >= t).mean()) <= rate), 0.99)
    if out["block"] < out["flag"]:
        out["block"] = out["flag"]
    return out


def featurise(embedder: MiniLMEmbedder, items: list[Window]) -> NDArray[np.float32]:
    texts = [item.text for item in items]
    vectors = embedder.embed_sync(texts)
    lexical = np.stack([lexical_features(t, heuristics.scan(t)) for t in texts])
    return np.hstack([vectors, lexical]).astype(np.float32)


def train(data: Path, embedder: MiniLMEmbedder) -> InjectionClassifier:
    """Both heads, trained on their windows; metadata records the data and counts used."""
    heads: dict[str, Head] = {}
    counts: dict[str, Any] = {}
    thresholds: dict[str, dict[str, float]] = {}
    for source, items in (("user", user_windows(data)), ("retrieved", retrieved_windows(data))):
        x = featurise(embedder, items)
        y = np.array([item.label for item in items], dtype=np.float32)
        weights = np.array([item.weight for item in items], dtype=np.float32)
        heads[source] = fit_logistic(x, y, weights)
        thresholds[source] = calibrate(x, y, weights, TARGET_FPR[source])
        counts[source] = {
            "windows": len(items),
            "injections": int(y.sum()),
            "origins": dict(sorted(Counter(item.origin for item in items).items())),
        }
    metadata = {
        "feature_version": FEATURE_VERSION,
        "embedder": embedder.model_id,
        "embedder_sha256": embedder.weights_sha256,
        "l2": L2,
        "steps": STEPS,
        "training": counts,
        "thresholds": thresholds,
        "target_fpr": TARGET_FPR,
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
    ]
    return {n: hashlib.sha256((data / n).read_bytes()).hexdigest()[:16] for n in names}
