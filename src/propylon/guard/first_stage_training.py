"""Training and judging the guard's first stage (``first_stage.py``) with the full classifier's
data, windows, splits and calibration (``fitting.py``).

The static head is fitted on the same windows as the full head, with the static vector in
place of MiniLM's and the same lexical features; its thresholds are chosen on the same dev
texts. The band is chosen on those dev texts too: the narrowest (fewest windows sent to
MiniLM) whose cascade loses at most ``BAND_LOSS`` of balanced accuracy against the full head,
at the flag and at the block threshold. ``propylon eval guard-first-stage`` repeats all of it
leave-one-source-out and scores each held-out source three ways: full, static alone, cascade.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from propylon import report_section
from propylon.guard.classifier import EMBEDDING_SIZE
from propylon.guard.datasets import held_back
from propylon.guard.features import units
from propylon.guard.first_stage import Band, FirstStageHead
from propylon.guard.fitting import DEV_SHARE, Calibrated, Featurised, fit_calibrated
from propylon.guard.generalisation import Prediction, Row, percent, rows
from propylon.local.static import StaticEmbedder

SECTION = "guard-first-stage"
BAND_LOSS = 0.005  # balanced accuracy the band may give up on dev texts, at each threshold
LOWS = np.concatenate([[0.0], np.geomspace(0.002, 0.5, 24)])
HIGHS = np.concatenate([np.linspace(0.05, 1.0, 39), [1.01]])

Floats = NDArray[np.float32]
Mask = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Pair:
    """The same windows featurised for the full head and for the static head."""

    full: Featurised
    static: Featurised


def static_featurised(full: Featurised, static: StaticEmbedder, source: str = "user") -> Featurised:
    """``full`` with each window's MiniLM vector replaced by its static vector (the windows
    are cut again exactly as ``fitting.featurise`` cut them)."""
    windows = [w for e in full.examples for w in units(e.text, source, 32)]
    unique = list(dict.fromkeys(windows))
    position = {w: i for i, w in enumerate(unique)}
    vectors = static.embed_sync(unique)[[position[w] for w in windows]]
    x = np.hstack([vectors, full.x[:, EMBEDDING_SIZE:]]).astype(np.float32)
    return Featurised(full.examples, x, full.owner, full.heuristic, full.labels)


def dev_texts(data: Featurised, texts: Mask) -> Mask:
    """The dev split ``fit_calibrated`` chose its thresholds on."""
    dev: Mask = np.array([held_back(e.text, DEV_SHARE) for e in data.examples]) & texts
    return dev


def _text_max(window: Floats, data: Featurised, rows_: Mask) -> Floats:
    best = np.zeros(len(data.examples), dtype=np.float32)
    np.maximum.at(best, data.owner[rows_], window)
    out: Floats = np.maximum(best, data.heuristic)
    return out


def _balanced(scores: Floats, labels: Floats, threshold: float) -> float:
    hit = scores >= threshold
    recall = float(hit[labels == 1].mean()) if (labels == 1).any() else 1.0
    fpr = float(hit[labels == 0].mean()) if (labels == 0).any() else 0.0
    return (recall + 1.0 - fpr) / 2.0


@dataclass(frozen=True, slots=True)
class Scored:
    """Per-text scores of chosen texts by the full head, the static head and the cascade."""

    full: Floats
    static: Floats
    cascade: Floats
    deferred_share: float  # windows the cascade sent to MiniLM


def score(pair: Pair, full: Calibrated, first: FirstStageHead, texts: Mask) -> Scored:
    rows_ = pair.full.rows(texts)
    f = full.head.probability(pair.full.x[rows_])
    s = first.head.probability(pair.static.x[rows_])
    return _cascade(pair, rows_, texts, f, s, full.thresholds, first)


def _cascade(
    pair: Pair,
    rows_: Mask,
    texts: Mask,
    f: Floats,
    s: Floats,
    thresholds: dict[str, float],
    first: FirstStageHead,
) -> Scored:
    deferred = first.band.deferred(s)
    cascade = np.where(deferred, f, first.on_full_scale(s, thresholds)).astype(np.float32)
    return Scored(
        _text_max(f, pair.full, rows_)[texts],
        _text_max(s, pair.full, rows_)[texts],
        _text_max(cascade, pair.full, rows_)[texts],
        float(deferred.mean()) if len(deferred) else 0.0,
    )


def choose_band(pair: Pair, full: Calibrated, static: Calibrated, dev: Mask) -> Band:
    """The band sending the fewest dev windows to MiniLM within ``BAND_LOSS``."""
    labels = pair.full.labels[dev]
    rows_ = pair.full.rows(dev)
    f = full.head.probability(pair.full.x[rows_])
    s = static.head.probability(pair.static.x[rows_])
    best: tuple[float, Band] = (2.0, Band(0.0, 1.01))
    for low in LOWS:
        for high in HIGHS[low < HIGHS]:
            band = Band(float(low), float(high))
            share = float(band.deferred(s).mean()) if len(s) else 0.0
            if share >= best[0]:
                continue
            first = FirstStageHead(static.head, static.thresholds, band, {})
            scored = _cascade(pair, rows_, dev, f, s, full.thresholds, first)
            ok = all(
                _balanced(scored.cascade, labels, full.thresholds[name])
                >= _balanced(scored.full, labels, full.thresholds[name]) - BAND_LOSS
                for name in ("flag", "block")
            )
            if ok:
                best = (share, band)
    return best[1]


def fit_first_stage(pair: Pair, texts: Mask) -> tuple[Calibrated, FirstStageHead]:
    """Both heads fitted on ``texts`` (less their dev split), and the first stage with its
    band chosen on that dev split."""
    full = fit_calibrated(pair.full, texts)
    static = fit_calibrated(pair.static, texts)
    band = choose_band(pair, full, static, dev_texts(pair.full, texts))
    return full, FirstStageHead(static.head, static.thresholds, band, {})


@dataclass(frozen=True, slots=True)
class HeldOut:
    full: list[Prediction]
    static: list[Prediction]
    cascade: list[Prediction]
    deferred: dict[str, float]  # held-out source -> share of its windows sent to MiniLM


def leave_one_source_out(pair: Pair) -> HeldOut:
    origins = np.array([e.origin for e in pair.full.examples])
    out = HeldOut([], [], [], {})
    for origin in sorted(set(origins.tolist())):
        held = origins == origin
        full, first = fit_first_stage(pair, ~held)
        scored = score(pair, full, first, held)
        examples = [e for e, h in zip(pair.full.examples, held, strict=True) if h]
        for target, scores, thresholds in (
            (out.full, scored.full, full.thresholds),
            (out.static, scored.static, first.thresholds),
            (out.cascade, scored.cascade, full.thresholds),
        ):
            target += [
                Prediction(
                    origin, len(e.text), e.label, float(s), thresholds["flag"], thresholds["block"]
                )
                for e, s in zip(examples, scores, strict=True)
            ]
        out.deferred[origin] = scored.deferred_share
    return out


def render_markdown(held: HeldOut, seconds: float, cpu_us: dict[str, float]) -> str:
    """The "Guard first stage" section of docs/benchmarks.md."""
    full_rows, full_lengths = rows(held.full)
    static_rows, static_lengths = rows(held.static)
    cascade_rows, cascade_lengths = rows(held.cascade)

    def side_by_side(
        first: str, full: list[Row], static: list[Row], cascade: list[Row], deferred: bool
    ) -> str:
        lines = [
            f"| {first} | texts | full: bal. acc. | static only | cascade | cascade: flagged "
            "benign | cascade: recall | windows to MiniLM |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for f, s, c in zip(full, static, cascade, strict=True):
            share = held.deferred.get(f.name) if deferred else None
            lines.append(
                f"| {f.name} | {f.benign + f.attacks} | {percent(f.balanced_accuracy)} | "
                f"{percent(s.balanced_accuracy)} | {percent(c.balanced_accuracy)} | "
                f"{percent(c.fpr)} | {percent(c.recall)} | {percent(share)} |"
            )
        return "\n".join(lines)

    pooled_full, pooled_cascade = full_rows[-1], cascade_rows[-1]
    gap = 100 * ((pooled_full.balanced_accuracy or 0) - (pooled_cascade.balanced_accuracy or 0))
    windows = np.mean(list(held.deferred.values())) if held.deferred else 0.0
    return (
        "## Guard first stage, unseen sources\n\n"
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `propylon eval "
        "guard-first-stage --data ../shared/data --output docs/benchmarks.md` "
        f"({seconds / 60:.0f} min). Leave-one-source-out as in the section above: for each "
        "held-out source, the full head (MiniLM + lexical features), the static head (the "
        "static vector of `local/static.py` + the same lexical features) and the band where "
        "the static head defers to the full one are all fitted and chosen on the other "
        "sources (thresholds and band on their dev split, band: fewest windows to MiniLM "
        f"within {BAND_LOSS:.1%} of the full head's balanced accuracy there). Balanced "
        "accuracy at the flag threshold (detected = flagged or blocked).\n\n"
        + side_by_side("held-out source", full_rows, static_rows, cascade_rows, True)
        + "\n\nBy length (all held-out predictions pooled):\n\n"
        + side_by_side("length (characters)", full_lengths, static_lengths, cascade_lengths, False)
        + f"\n\nCascade vs full, pooled: {gap:+.2f} points of balanced accuracy lost "
        f"(goal ≤ 1 point: {'met' if gap <= 1.0 else 'not met'}); windows sent to MiniLM: "
        f"{100 * windows:.1f} % on average over sources. CPU per window on this machine: "
        + ", ".join(f"{name} {us:.0f} µs" for name, us in cpu_us.items())
        + ".\n"
    )


def write_section(path: Path, section: str) -> None:
    """Replace this section between its markers in ``path`` (appended when absent)."""
    report_section.write_section(path, section, SECTION)
