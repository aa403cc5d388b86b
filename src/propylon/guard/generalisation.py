"""``propylon eval guard``: leave-one-source-out, the detector's accuracy on sources it was not
trained on.

For each source of the corpus (``corpus.py``): fit the user head on every other source
(75 % of each), choose its flag and block thresholds per length bucket on the other 25 % of
those sources (``fitting.fit_calibrated``), then score the held-out source with heuristics +
classifier exactly as the detector does (``detector.Thresholds.label``: the maximum over
windows against the length bucket's thresholds; a long text needs two windows that agree, a
block needs the heuristics to corroborate). Nothing of the held-out source is seen by the
weights or by the thresholds. Results by source and by length bucket.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from propylon import report_section
from propylon.guard.classifier import Head
from propylon.guard.datasets import Example
from propylon.guard.detector import (
    REREAD_MARGIN,
    USER_CORROBORATE,
    Label,
    Thresholds,
    as_served,
    windows_agree,
)
from propylon.guard.fitting import LENGTH_BUCKETS, Featurised, fit_calibrated

SECTION = "guard"
# Only used when a fold stores no value, which ``fit_calibrated`` always does.
_NONE = Thresholds(1.0, 1.0)


@dataclass(frozen=True, slots=True)
class Prediction:
    origin: str
    length: int
    label: int
    score: float
    flag: float
    block: float
    verdict: Label | None = None  # the detector's label; None: the score against the two

    @property
    def flagged(self) -> bool:
        return self.score >= self.flag if self.verdict is None else self.verdict != "benign"

    @property
    def blocked(self) -> bool:
        return self.score >= self.block if self.verdict is None else self.verdict == "injection"


@dataclass(frozen=True, slots=True)
class Row:
    name: str
    benign: int
    attacks: int
    flagged_benign: int
    blocked_benign: int
    detected: int  # attacks flagged or blocked
    blocked_attacks: int

    @property
    def fpr(self) -> float | None:
        return self.flagged_benign / self.benign if self.benign else None

    @property
    def blocked_fpr(self) -> float | None:
        return self.blocked_benign / self.benign if self.benign else None

    @property
    def recall(self) -> float | None:
        return self.detected / self.attacks if self.attacks else None

    @property
    def balanced_accuracy(self) -> float | None:
        if self.recall is None or self.fpr is None:
            return None
        return (self.recall + 1.0 - self.fpr) / 2.0


@dataclass(slots=True)
class HeldOut:
    """Held-out predictions read exactly, and as served with a fast reader (``fast``: int8
    kernels, with the exact reading where the fast one lies near a threshold)."""

    exact: list[Prediction]
    served: list[Prediction] | None = None
    windows: int = 0  # windows the fast reader read
    reread: int = 0  # of them read again exactly (``detector.near_threshold``)


def leave_one_source_out(data: Featurised, fast: Featurised | None = None) -> HeldOut:
    """Every text scored by a head (and thresholds) fitted on ``data`` without its source: on
    ``data``'s rows, and, with ``fast`` (the same windows read with int8 kernels, as
    ``guard.user_int8`` reads user input), as the detector serves it: the fast reading, or the
    exact one where the fast one lies near the flag or block threshold."""
    origins = np.array([e.origin for e in data.examples])
    out = HeldOut([], None if fast is None else [])
    for origin in sorted(set(origins.tolist())):
        held = origins == origin
        calibrated = fit_calibrated(data, ~held)
        thresholds = Thresholds.stored(calibrated.thresholds, _NONE)
        for i in np.flatnonzero(held):
            example = data.examples[i]
            of_length = thresholds.for_length(len(example.text))
            h = float(data.heuristic[i])
            own, decoded = data.window_scores(calibrated.head, int(i))
            out.exact.append(_predicted(example, origin, h, own, decoded, of_length))
            if fast is None or out.served is None:
                continue
            fast_own, fast_decoded = fast.window_scores(calibrated.head, int(i))
            served_own, own_reread = as_served(own, fast_own, [of_length] * len(own))
            served_decoded, decoded_reread = as_served(
                decoded, fast_decoded, [of_length] * len(decoded)
            )
            out.windows += len(own) + len(decoded)
            out.reread += own_reread + decoded_reread
            out.served.append(_predicted(example, origin, h, served_own, served_decoded, of_length))
    return out


def _predicted(
    example: Example,
    origin: str,
    h: float,
    own: list[float],
    decoded: list[float],
    of_length: Thresholds,
) -> Prediction:
    score = max([h, *own, *decoded])
    agree = windows_agree(own, decoded, of_length.flag)
    return Prediction(
        origin,
        len(example.text),
        example.label,
        score,
        of_length.flag,
        of_length.block,
        of_length.label(score, h, agree),
    )


def rows(predictions: list[Prediction]) -> tuple[list[Row], list[Row]]:
    """(one row per held-out source + all, one row per length bucket)."""
    by_source = [
        _row(origin, [p for p in predictions if p.origin == origin])
        for origin in sorted({p.origin for p in predictions})
    ]
    by_source.append(_row("all sources", predictions))
    by_length = [
        _row(name, [p for p in predictions if low <= p.length < high])
        for name, low, high in LENGTH_BUCKETS
    ]
    return by_source, by_length


def _row(name: str, predictions: list[Prediction]) -> Row:
    benign = [p for p in predictions if p.label == 0]
    attacks = [p for p in predictions if p.label == 1]
    return Row(
        name,
        len(benign),
        len(attacks),
        sum(p.flagged for p in benign),
        sum(p.blocked for p in benign),
        sum(p.flagged for p in attacks),
        sum(p.blocked for p in attacks),
    )


def render(table: list[Row], first: str) -> str:
    lines = [
        f"| {first} | benign | attacks | balanced acc. | recall | flagged benign "
        "| blocked benign | blocked attacks |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in table:
        blocked_attacks = r.blocked_attacks / r.attacks if r.attacks else None
        lines.append(
            f"| {r.name} | {r.benign} | {r.attacks} | {percent(r.balanced_accuracy)} | "
            f"{percent(r.recall)} | {percent(r.fpr)} | {percent(r.blocked_fpr)} | "
            f"{percent(blocked_attacks)} |"
        )
    return "\n".join(lines)


def render_markdown(held: HeldOut, seconds: float, gap: float | None = None) -> str:
    """The "Prompt-injection detection, unseen sources" section of docs/benchmarks.md: the
    held-out texts as served (``held.served`` when read with int8 kernels, compared with the
    exact reading source by source), else as read exactly."""
    predictions = held.exact if held.served is None else held.served
    by_source, by_length = rows(predictions)
    flags = sorted({(p.origin, p.flag, p.block) for p in predictions})
    spread = (
        f"flag {min(f for _, f, _ in flags):.3f}–{max(f for _, f, _ in flags):.3f}, "
        f"block {min(b for _, _, b in flags):.3f}–{max(b for _, _, b in flags):.3f}"
    )
    return (
        "## Prompt-injection detection, unseen sources\n\n"
        f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} with `propylon eval "
        "guard --data ../shared/data --output docs/benchmarks.md` "
        f"({seconds / 60:.0f} min on the shared 2-core machine). Leave-one-source-out on the "
        "user-input corpus: for each source, the user head is fitted on 75 % of every other "
        "source, its thresholds chosen on the remaining 25 % of those sources, separately in "
        "each length bucket (goal there: ≤ 1.5 % of the bucket's benign texts flagged, "
        "≤ 0.2 % blocked), and the held-out source is scored as the detector scores it "
        "(heuristics, the maximum over 600-character windows and over the windows of decoded "
        "payloads; a text of several windows is flagged on the classifier's word only when two "
        "of its windows reach the flag threshold; blocked only when the heuristics corroborate, "
        f"score ≥ {USER_CORROBORATE}). Thresholds chosen per fold "
        f"and length: {spread}. Detected = flagged or blocked. "
        + (
            "The heads are fitted on MiniLM's exact vectors; the held-out texts are read as "
            "`guard.user_int8` (on by default) reads user input: with its int8 kernels, one "
            "window a call, and again exactly where that reading lies within "
            f"{REREAD_MARGIN} logits of the flag or block threshold "
            f"({held.reread} of {held.windows} windows, {_share(held.reread, held.windows)})."
            + (
                ""
                if gap is None
                else f" The largest difference between the two readings of these windows under "
                f"the shipped user head: {gap:.2f} logits (the margin is it, rounded up to the "
                "next tenth)."
            )
            if held.served is not None
            else "MiniLM's vectors, fitted and scored alike."
        )
        + "\n\nBy held-out source:\n\n"
        + render(by_source, "held-out source")
        + "\n\nBy length (all held-out predictions pooled):\n\n"
        + render(by_length, "length (characters)")
        + "\n"
        + (_compared(held.exact, held.served) if held.served is not None else "")
    )


def _share(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "–"


def largest_gap(exact: Featurised, fast: Featurised, head: Head) -> float:
    """The largest difference, in logits, between ``head``'s scores of the same windows read
    exactly and fast (int8 kernels): what ``detector.REREAD_MARGIN`` rounds up."""
    a, b = (
        np.clip(head.probability(f.x).astype(np.float64), 1e-7, 1 - 1e-7) for f in (exact, fast)
    )
    return float(np.max(np.abs(np.log(a / (1 - a)) - np.log(b / (1 - b)))))


def _compared(exact: list[Prediction], served: list[Prediction]) -> str:
    """Each held-out source's headline measure (balanced accuracy; recall with attacks only;
    flagged benign with benign texts only) read exactly and as served."""
    lines = [
        "",
        "The same folds and heads, the held-out texts read with MiniLM's exact kernels against "
        "as served (int8 kernels, exact near a threshold):",
        "",
        "| held-out source | measure | exact | as served | loss (points) |",
        "|---|---|---:|---:|---:|",
    ]
    worst = 0.0
    for before, after in zip(rows(exact)[0], rows(served)[0], strict=True):
        (measure, a), (_, b) = _headline(before), _headline(after)
        if a is None or b is None:
            continue
        loss = 100 * ((b - a) if measure == "flagged benign" else (a - b))
        worst = max(worst, loss)
        lines.append(f"| {before.name} | {measure} | {percent(a)} | {percent(b)} | {loss:+.1f} |")
    lines += ["", f"Largest loss as served on any source: {worst:.1f} points.", ""]
    return "\n".join(lines)


def _headline(row: Row) -> tuple[str, float | None]:
    """A source's headline measure and its value."""
    if row.balanced_accuracy is not None:
        return "balanced accuracy", row.balanced_accuracy
    return ("recall", row.recall) if row.attacks else ("flagged benign", row.fpr)


def percent(value: float | None) -> str:
    """A share as "12.3 %", or "–" when there is nothing to divide by."""
    return "–" if value is None else f"{100.0 * value:.1f} %"


def write_section(path: Path, section: str) -> None:
    """Replace this section between its markers in ``path`` (appended when absent)."""
    report_section.write_section(path, section, SECTION)
