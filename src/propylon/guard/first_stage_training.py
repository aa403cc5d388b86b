"""Training and judging the guard's first stage (``first_stage.py``) with the full classifier's
data, windows, splits and calibration (``fitting.py``).

The shipped static head is fitted on the same windows as the full head, with the static
vector in place of MiniLM's and the same lexical features, on the labels. The alternative,
measured beside it, is **distilled** (``distil``): fitted to the full head's logit of each
window, no labels read, on the full head's training windows and on unlabelled texts the full
head scores (``unlabelled_examples``); a cascade needs the static head to say where the full
head would not flag, which is what distillation fits. At the same band rule it sent no fewer
held-out benign windows to MiniLM, so it is not shipped (``SHIPPED_STUDENT``). Either head's
thresholds are chosen on the same dev texts as the full head's, per length bucket. The band
is chosen on those dev texts too, per length bucket: the narrowest (fewest of the bucket's
windows sent to MiniLM) with which no dev source's decisions change by more than
``BAND_LOSS`` at the bucket's flag and at its block threshold (``_changed``: bounding the
worst source, not the pooled average, is what keeps the loss small on a source the band never
saw). ``propylon guard train-first-stage`` fits the shipped head against the shipped full
head (``fit_against``); ``propylon eval guard-first-stage`` repeats it all
leave-one-source-out (the unlabelled texts of the held-out source stay out too) and scores
each held-out source three ways: full, static alone, cascade; and both heads' share of
benign windows sent to MiniLM.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from propylon import report_section
from propylon.guard import corpus, datasets
from propylon.guard.classifier import EMBEDDING_SIZE, Head, InjectionClassifier
from propylon.guard.datasets import Example, held_back
from propylon.guard.detector import Thresholds, as_served
from propylon.guard.features import units
from propylon.guard.first_stage import (
    Band,
    FirstStageHead,
    Table,
    bucket_of,
    column,
    head_digest,
)
from propylon.guard.fitting import (
    DEV_SHARE,
    LENGTH_BUCKETS,
    Calibrated,
    Featurised,
    choose_by_length,
    fit_calibrated,
    text_scores,
)
from propylon.guard.generalisation import Prediction, Row, percent, rows
from propylon.local.static import StaticEmbedder

SECTION = "guard-first-stage"
BAND_LOSS = 0.005  # decisions of one dev source the band may change, at each threshold
# The band's low end is halved after it is chosen: on dev texts of the fitted sources, a low
# end with no change there still lost 1.25 points on unseen sources (their attacks score lower
# on the static head than any fitted source's); with the margin, 0.19 (docs/benchmarks.md).
BAND_MARGIN = 0.5
# The shipped static head is fitted on the labels: the distilled one sent no fewer held-out
# benign windows to MiniLM at the same band rule (37.9 % against 39.5 % pooled, 27.7 % against
# 26.9 % on benign-only sources, more of the short ones) and lost 0.33 points against 0.13
# (docs/benchmarks.md, "Guard first stage"). ``propylon guard train-first-stage --student``.
SHIPPED_STUDENT = "labels"
RIDGE = 1.0  # the distilled head's L2 penalty, not tuned
LOGIT_CLIP = 8.0  # beyond this the teacher is sure either way; not tuned
UNLABELLED_PER_SOURCE = 1000  # texts per corpus source the teacher scores (labelled: 400)
LOWS = np.concatenate([[0.0], np.geomspace(0.002, 0.9, 40)])

Floats = NDArray[np.float32]
Mask = NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class Unlabelled:
    """Windows without labels, featurised for both heads, that the full head (the teacher)
    scores for the static head (the student) to learn: more of the corpus's texts than its
    labelled sample holds, and benign text of no labelled source (``unlabelled``)."""

    full: Floats
    static: Floats
    origin: NDArray[np.str_]  # the corpus source each window's text belongs to ("" none)

    def rows(self, held_out: set[str]) -> Mask:
        keep: Mask = ~np.isin(self.origin, sorted(held_out))
        return keep


@dataclass(frozen=True, slots=True)
class Pair:
    """The same windows featurised for the full head and for the static head."""

    full: Featurised
    static: Featurised
    unlabelled: Unlabelled | None = None
    # ``full``'s windows as the server reads a deferred one (int8 kernels, ``guard.user_int8``):
    # held-out scoring reads the cascade's MiniLM stage here; fitting and the band read ``full``.
    served: Featurised | None = None


def static_featurised(full: Featurised, static: StaticEmbedder, source: str = "user") -> Featurised:
    """``full`` with each window's MiniLM vector replaced by its static vector (the windows
    are cut again exactly as ``fitting.featurise`` cut them)."""
    windows = [w for e in full.examples for w in units(e.text, source, 32)]
    unique = list(dict.fromkeys(windows))
    position = {w: i for i, w in enumerate(unique)}
    vectors = static.embed_sync(unique)[[position[w] for w in windows]]
    x = np.hstack([vectors, full.x[:, EMBEDDING_SIZE:]]).astype(np.float32)
    return Featurised(full.examples, x, full.owner, full.heuristic, full.labels)


def unlabelled_examples(
    data: Path, labelled: list[Example], per_source: int = UNLABELLED_PER_SOURCE
) -> list[Example]:
    """Texts the teacher scores for distillation (their labels are never read): the corpus's
    sources sampled to ``per_source`` texts each, less the labelled sample's; Banking77
    queries, under the source of the corpus's Banking77/CLINC150 trigger-word queries so
    they leave with it; HANS sentences (no source). Not CLINC150's queries: the request
    bench's messages (``bench/fast_defaults.py``) are drawn from them."""
    seen = {e.text for e in labelled}
    more = [e for e in corpus.load(data, per_source) if e.text not in seen]
    rng = random.Random(datasets.SEED)
    out = list(more)
    for folder, origin, limit in (
        ("pairs-banking77-intent", "intent-trigger-words", per_source),
        ("pairs-hans-adversarial", "", 2 * per_source // 5),
    ):
        texts: set[str] = set()
        with (data / folder / "pairs.jsonl").open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                texts.update((row["a"], row["b"]))
        chosen = sorted(texts - seen)
        rng.shuffle(chosen)
        out += [Example(t, 0, "user", origin) for t in chosen[:limit]]
    return out


def unlabelled(full: Featurised, static: StaticEmbedder) -> Unlabelled:
    """``full`` (``fitting.featurise`` of ``unlabelled_examples``) as windows for both heads."""
    origins = np.array([e.origin for e in full.examples])
    return Unlabelled(full.x, static_featurised(full, static).x, origins[full.owner])


def dev_texts(data: Featurised, texts: Mask) -> Mask:
    """The dev split ``fit_calibrated`` chose its thresholds on."""
    dev: Mask = np.array([held_back(e.text, DEV_SHARE) for e in data.examples]) & texts
    return dev


def _text_max(window: Floats, data: Featurised, rows_: Mask) -> Floats:
    best = np.zeros(len(data.examples), dtype=np.float32)
    np.maximum.at(best, data.owner[rows_], window)
    out: Floats = np.maximum(best, data.heuristic)
    return out


def text_lengths(data: Featurised) -> NDArray[np.int64]:
    return np.array([len(e.text) for e in data.examples], dtype=np.int64)


def _changed(
    cascade: Floats, full: Floats, labels: Floats, origins: NDArray[np.str_], threshold: float
) -> float:
    """The worst change one source sees from the cascade at ``threshold``: the share of its
    attacks the full head detects and the cascade misses, or of its benign texts the cascade
    flags and the full head does not (a source with both labels: the change of its balanced
    accuracy)."""
    worst = 0.0
    for origin in np.unique(origins):
        of = origins == origin
        lost = (full >= threshold) & (cascade < threshold) & of
        gained = (cascade >= threshold) & (full < threshold) & of
        attacks, benign = float((labels[of] == 1).sum()), float((labels[of] == 0).sum())
        recall = float(lost[labels == 1].sum()) / attacks if attacks else 0.0
        fpr = float(gained[labels == 0].sum()) / benign if benign else 0.0
        change = (recall + fpr) / 2 if attacks and benign else recall + fpr
        worst = max(worst, change)
    return worst


@dataclass(frozen=True, slots=True)
class Scored:
    """Per-text scores of chosen texts by the full head, the static head and the cascade."""

    full: Floats
    static: Floats
    cascade: Floats
    deferred_share: float  # windows the cascade sent to MiniLM
    deferred: Mask  # which of the chosen texts' windows it sent


def score(pair: Pair, full: Calibrated, first: FirstStageHead, texts: Mask) -> Scored:
    """The held-out ``texts`` scored by the full head (exact vectors), the static head and the
    cascade (its MiniLM stage on ``pair.served`` when there is one)."""
    rows_ = pair.full.rows(texts)
    f = full.head.probability(pair.full.x[rows_])
    s = first.head.probability(pair.static.x[rows_])
    served = None
    if pair.served is not None:  # the fast reading, or the exact one near a threshold
        fast = full.head.probability(pair.served.x[rows_])
        stored = Thresholds.stored(full.thresholds, Thresholds(1.0, 1.0))
        lengths = text_lengths(pair.full)[pair.full.owner[rows_]]
        of_window = [stored.for_length(int(n)) for n in lengths]
        read, _ = as_served(f.tolist(), fast.tolist(), of_window)
        served = np.array(read, dtype=np.float32)
    return _cascade(pair, rows_, texts, f, s, full.thresholds, first, served)


def _cascade(
    pair: Pair,
    rows_: Mask,
    texts: Mask,
    f: Floats,
    s: Floats,
    thresholds: Table,
    first: FirstStageHead,
    served: Floats | None = None,
) -> Scored:
    lengths = text_lengths(pair.full)[pair.full.owner[rows_]]
    deferred = first.band.deferred(s, lengths)
    mapped = first.on_full_scale(s, thresholds, lengths)
    cascade = np.where(deferred, f if served is None else served, mapped).astype(np.float32)
    return Scored(
        _text_max(f, pair.full, rows_)[texts],
        _text_max(s, pair.full, rows_)[texts],
        _text_max(cascade, pair.full, rows_)[texts],
        float(deferred.mean()) if len(deferred) else 0.0,
        deferred,
    )


def choose_band(
    pair: Pair, full: Calibrated, static: Calibrated, dev: Mask, margin: float = BAND_MARGIN
) -> Band:
    """Per length bucket, ``[low, 1]``: MiniLM reads every window the static head does not
    find clearly benign. ``low`` is the highest with which no dev source's decisions change
    by more than ``BAND_LOSS`` at the bucket's flag and block thresholds (``_changed``), times
    ``BAND_MARGIN``, and never above the static head's own flag threshold there, so the static
    head alone never flags nor blocks."""
    lengths = text_lengths(pair.full)
    bucket = bucket_of(full.thresholds, lengths)
    origins = np.array([e.origin for e in pair.full.examples])
    flags, blocks = column(full.thresholds, "flag"), column(full.thresholds, "block")
    static_flags = column(static.thresholds, "flag")
    lows: list[float] = []
    for b in range(len(flags)):
        texts = dev & (bucket == b)
        rows_ = pair.full.rows(texts)
        f = full.head.probability(pair.full.x[rows_])
        s = static.head.probability(pair.static.x[rows_])
        chosen, ceiling = 0.0, static_flags[min(b, len(static_flags) - 1)]
        for low in LOWS[np.less_equal(LOWS, ceiling)]:
            first = FirstStageHead(static.head, static.thresholds, Band(float(low), 1.01), {})
            scored = _cascade(pair, rows_, texts, f, s, full.thresholds, first)
            labels = pair.full.labels[texts]
            worst = max(
                _changed(scored.cascade, scored.full, labels, origins[texts], float(t))
                for t in (flags[b], blocks[b])
            )
            if worst <= BAND_LOSS:
                chosen = float(low)
        lows.append(chosen * margin)
    belows = [int(row[0]) for row in full.thresholds.get("by_length", [])]
    rows = tuple((below, low, 1.01) for below, low in zip(belows, lows, strict=False))
    return Band(lows[-1], 1.01, rows)


def distil(pair: Pair, teacher: Head, texts: Mask) -> Head:
    """The static head fitted to ``teacher``'s logit of each window (no labels), by weighted
    ridge regression, the logits clipped to ``±LOGIT_CLIP``: the windows of ``texts`` and the
    unlabelled windows of every source but those with no text in ``texts`` (a held-out
    source's stay out). Each source weighs the same, its windows alike. Regressing the logit
    rather than fitting the probability (cross-entropy on soft targets) left fewer benign dev
    windows above the band's low end: 5.6 % against 7.0 % (docs/benchmarks.md)."""
    origins = np.array([e.origin for e in pair.full.examples])
    rows_ = pair.full.rows(texts)
    static, full = [pair.static.x[rows_]], [pair.full.x[rows_]]
    owners = [origins[pair.full.owner[rows_]]]
    if pair.unlabelled is not None:
        keep = pair.unlabelled.rows(set(origins.tolist()) - set(origins[texts].tolist()))
        static.append(pair.unlabelled.static[keep])
        full.append(pair.unlabelled.full[keep])
        owners.append(pair.unlabelled.origin[keep])
    x, origin = np.vstack(static), np.concatenate(owners)
    logit = np.vstack(full) @ teacher.weights + np.float32(teacher.bias)
    logit = np.clip(logit, -LOGIT_CLIP, LOGIT_CLIP)
    _, inverse, counts = np.unique(origin, return_inverse=True, return_counts=True)
    weight = 1.0 / counts[inverse]
    weight = (weight / weight.mean()).astype(np.float32)
    xb = np.hstack([x, np.ones((len(x), 1), dtype=np.float32)])
    weighted = xb * weight[:, None]
    gram = weighted.T @ xb + np.float32(RIDGE) * np.eye(xb.shape[1], dtype=np.float32)
    solution = np.linalg.solve(gram, weighted.T @ logit.astype(np.float32))
    return Head(solution[:-1].astype(np.float32), float(solution[-1]))


def distil_calibrated(pair: Pair, teacher: Head, texts: Mask) -> Calibrated:
    """``distil`` on ``texts`` less their dev split; the static head's thresholds chosen on
    that dev split's benign texts, per length bucket, as ``fitting.fit_calibrated`` does."""
    dev = dev_texts(pair.full, texts)
    head = distil(pair, teacher, texts & ~dev)
    benign_dev = dev & (pair.full.labels == 0)
    scores = text_scores(head, pair.static, benign_dev)
    return Calibrated(
        head, choose_by_length(scores, text_lengths(pair.full)[benign_dev]), int(dev.sum())
    )


def fit_first_stage(
    pair: Pair, texts: Mask, student: str = "distilled", full: Calibrated | None = None
) -> tuple[Calibrated, FirstStageHead]:
    """The full head fitted on ``texts`` (less their dev split) unless given, the static head
    distilled from it (``student="labels"``: fitted on the labels instead, as before
    distillation), and the first stage with its band chosen on that dev split."""
    full = full or fit_calibrated(pair.full, texts)
    static, band = _student(pair, full, texts, student)
    return full, FirstStageHead(static.head, static.thresholds, band, {})


def _student(pair: Pair, full: Calibrated, texts: Mask, student: str) -> tuple[Calibrated, Band]:
    """The static head (``student``: ``"labels"`` or ``"distilled"`` from ``full``) fitted on
    ``texts`` less their dev split, and its band chosen on that dev split against ``full``."""
    if student == "labels":
        static = fit_calibrated(pair.static, texts)
    else:
        static = distil_calibrated(pair, full.head, texts)
    return static, choose_band(pair, full, static, dev_texts(pair.full, texts))


def fit_against(
    pair: Pair, classifier: InjectionClassifier, static_sha256: str, student: str = "labels"
) -> FirstStageHead:
    """The shipped first stage: the static head fitted on every source (less the dev split)
    and its band chosen on the dev split against ``classifier``'s user head and its stored
    thresholds, the head the server runs behind it (``propylon guard train`` fits that head
    on the same texts less the same dev split)."""
    everything = np.ones(len(pair.full.examples), dtype=np.bool_)
    dev = dev_texts(pair.full, everything)
    user = classifier.heads["user"]
    full = Calibrated(user, classifier.metadata["thresholds"]["user"], int(dev.sum()))
    static, band = _student(pair, full, everything, student)
    metadata = {
        "static_sha256": static_sha256,
        "full_head_sha256": head_digest(user),
        "texts": len(pair.full.examples),
        "band_loss": BAND_LOSS,
        "student": student,
    }
    return FirstStageHead(static.head, static.thresholds, band, metadata)


@dataclass(frozen=True, slots=True)
class HeldOut:
    full: list[Prediction]
    static: list[Prediction]
    cascade: list[Prediction]
    deferred: dict[str, float]  # held-out source -> share of its windows sent to MiniLM
    # held-out source or length bucket -> (benign windows sent to MiniLM, benign windows)
    benign: dict[str, tuple[int, int]] = field(default_factory=dict)


def leave_one_source_out(
    pair: Pair, students: tuple[str, ...] = ("distilled",)
) -> dict[str, HeldOut]:
    """Each source held out in turn, the full head fitted once per fold and each of
    ``students`` (``fit_first_stage``) behind it."""
    outs = {student: HeldOut([], [], [], {}) for student in students}
    for origin in sorted({e.origin for e in pair.full.examples}):
        held = np.array([e.origin == origin for e in pair.full.examples])
        full = fit_calibrated(pair.full, ~held)
        for student in students:
            _, first = fit_first_stage(pair, ~held, student, full)
            _score_fold(pair, full, first, held, origin, outs[student])
    return outs


def _score_fold(
    pair: Pair, full: Calibrated, first: FirstStageHead, held: Mask, origin: str, out: HeldOut
) -> None:
    lengths = text_lengths(pair.full)
    scored = score(pair, full, first, held)
    owner = pair.full.owner[pair.full.rows(held)]
    benign = pair.full.labels[owner] == 0
    windows = [(origin, benign)] + [
        (name, benign & (lengths[owner] >= low) & (lengths[owner] < high))
        for name, low, high in LENGTH_BUCKETS
    ]
    for key, inside in windows:
        sent, total = out.benign.get(key, (0, 0))
        out.benign[key] = (sent + int(scored.deferred[inside].sum()), total + int(inside.sum()))
    examples = [e for e, h in zip(pair.full.examples, held, strict=True) if h]
    for target, scores, thresholds in (
        (out.full, scored.full, full.thresholds),
        (out.static, scored.static, first.thresholds),
        (out.cascade, scored.cascade, full.thresholds),
    ):
        stored = Thresholds.stored(thresholds, Thresholds(1.0, 1.0))
        for e, s in zip(examples, scores, strict=True):
            of_length = stored.for_length(len(e.text))
            target.append(
                Prediction(origin, len(e.text), e.label, float(s), of_length.flag, of_length.block)
            )
    out.deferred[origin] = scored.deferred_share


def _gap(held: HeldOut) -> float:
    """Points of pooled balanced accuracy the cascade loses against the full head."""
    full, cascade = rows(held.full)[0][-1], rows(held.cascade)[0][-1]
    return 100 * ((full.balanced_accuracy or 0) - (cascade.balanced_accuracy or 0))


def _sent(held: HeldOut, key: str) -> str:
    sent, total = held.benign.get(key, (0, 0))
    return f"{100 * sent / total:.1f} %" if total else "–"


def _pooled_sent(held: HeldOut, keys: list[str]) -> float:
    sent = sum(held.benign.get(k, (0, 0))[0] for k in keys)
    total = sum(held.benign.get(k, (0, 0))[1] for k in keys)
    return sent / total if total else 0.0


def render_markdown(
    held: HeldOut,
    seconds: float,
    cpu_us: dict[str, float],
    other: HeldOut | None = None,
    *,
    served: bool = False,
) -> str:
    """The "Guard first stage" section of docs/benchmarks.md: ``held``, the shipped student
    (``SHIPPED_STUDENT``), and ``other``, the other one, for comparison; ``served``: the
    cascade's MiniLM stage read int8 vectors (``Pair.served``)."""
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

    sources = sorted({p.origin for p in held.full})
    with_benign = [k for k in sources if held.benign.get(k, (0, 0))[1]]
    benign_only = [k for k in with_benign if not any(p.label for p in held.full if p.origin == k)]
    buckets = [name for name, _, _ in LENGTH_BUCKETS]
    names = {"labels": "fitted on the labels", "distilled": "distilled"}
    shipped = names[SHIPPED_STUDENT]
    alternative = names["distilled" if SHIPPED_STUDENT == "labels" else "labels"]
    comparison = ""
    if other is not None:
        lines = [
            f"| benign windows of | shipped ({shipped}): to MiniLM | {alternative}: to MiniLM |",
            "|---|---:|---:|",
        ]
        for key in [*with_benign, *buckets]:
            lines.append(f"| {key} | {_sent(held, key)} | {_sent(other, key)} |")
        comparison = (
            f"\n\nThe shipped static head ({shipped}) against the same head {alternative}, "
            "same folds, same band rule (margin included): the share of the held-out benign "
            "windows each sends to MiniLM, by source and by length. Distilled: fitted by "
            "ridge regression to the full head's logit (clipped to ±8) of every window of the "
            "other sources' training texts and of unlabelled texts the full head scores (more "
            f"of those sources, up to {UNLABELLED_PER_SOURCE} texts each, Banking77 queries, "
            "HANS sentences; never the held-out source's), no labels read.\n\n"
            + "\n".join(lines)
            + f"\n\nShipped ({shipped}): {_gap(held):+.2f} points of balanced accuracy "
            f"lost; benign windows to MiniLM {100 * _pooled_sent(held, buckets):.1f} % "
            f"pooled ({100 * _pooled_sent(held, benign_only):.1f} % on the benign-only "
            f"sources). {alternative.capitalize()}: {_gap(other):+.2f} points; "
            f"{100 * _pooled_sent(other, buckets):.1f} % pooled "
            f"({100 * _pooled_sent(other, benign_only):.1f} %)."
        )
    gap = _gap(held)
    return (
        "## Guard first stage, unseen sources\n\n"
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `propylon eval "
        "guard-first-stage --data ../shared/data --output docs/benchmarks.md` "
        f"({seconds / 60:.0f} min). Leave-one-source-out as in the section above: for each "
        "held-out source, the full head (MiniLM + lexical features) is fitted on the other "
        "sources, and the static head (the static vector of `local/static.py` + the same "
        f"lexical features) {shipped} as shipped; thresholds and band are chosen on the "
        "other sources' dev split, per length bucket. Band: MiniLM reads every "
        "window the static head scores at or above `low`; `low` is the highest at which no "
        "dev source's detections or false flags change by more than "
        f"{BAND_LOSS:.1%} at the bucket's flag and block thresholds, times {BAND_MARGIN}. "
        "Balanced accuracy at the flag threshold of each text's length, as the detector "
        "applies it (detected = flagged or blocked). "
        + (
            "The full column reads MiniLM's exact vectors; the cascade's MiniLM stage reads "
            "as `guard.user_int8` (on by default) serves it: int8 kernels, one window a call, "
            "and the exact reading where that one lies near the flag or block threshold "
            "(`detector.near_threshold`; heads, thresholds and band fitted on exact vectors)."
            if served
            else "MiniLM's exact vectors in both."
        )
        + "\n\n"
        + side_by_side("held-out source", full_rows, static_rows, cascade_rows, True)
        + "\n\nBy length (all held-out predictions pooled):\n\n"
        + side_by_side("length (characters)", full_lengths, static_lengths, cascade_lengths, False)
        + f"\n\nCascade vs full, pooled: {gap:+.2f} points of balanced accuracy lost "
        f"(goal ≤ 1 point: {'met' if gap <= 1.0 else 'not met'}); benign windows sent to "
        f"MiniLM: {100 * _pooled_sent(held, buckets):.1f} % pooled, "
        f"{100 * _pooled_sent(held, benign_only):.1f} % over the sources with benign texts "
        "only (what most traffic looks like). CPU per window on this machine: "
        + ", ".join(f"{name} {us:.0f} µs" for name, us in cpu_us.items())
        + "."
        + comparison
        + "\n"
    )


def write_section(path: Path, section: str) -> None:
    """Replace this section between its markers in ``path`` (appended when absent)."""
    report_section.write_section(path, section, SECTION)
