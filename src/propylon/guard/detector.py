"""``scan(text, source) -> Verdict``: heuristics first, then the classifier when they are not
decisive, with separate thresholds for user input and retrieved text.

This is the detector's public API: the guard stage of the request path calls it on every
user and tool message, and the context engine can call it on retrieved chunks
(``source="retrieved"``).

A scan done for a job or a run (``parent_id``: the screening of an ingested document, a
run's guard step) is work Propylon does for itself: the classifier's embeddings are then a
call of their own (``origin: internal``), for that job and its tenant, which the request log
records when the detector is built with ``record`` (the composition root passes the request
log's). The model is the local MiniLM, so nothing is billed: no tokens, no cost; the record
shows the time it took and, in its metadata, how many windows of which kind of text were
embedded. A scan without ``parent_id`` is part of its caller's own call: the guard stage of a
request runs inside the request, whose record holds its time (``guard.ms``).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from propylon.gateway.call import CallInfo, UsageReported
from propylon.gateway.protocol import (
    EmbeddingModel,
    Embeddings,
    EmbeddingService,
    ModelEmbeddings,
)
from propylon.guard import heuristics
from propylon.guard.classifier import InjectionClassifier
from propylon.guard.features import LEXICAL_SIZE, lexical_features, split_units
from propylon.guard.first_stage import FirstStage, FirstStageHead, StaticVectors
from propylon.principal import Principal
from propylon.settings import GuardSettings

Source = Literal["user", "retrieved"]
Record = Callable[[EmbeddingService], EmbeddingService]
GUARD_MODEL = "guard/all-MiniLM-L6-v2"  # the model name of the guard's records
Label = Literal["benign", "suspicious", "injection"]
Reader = Literal["exact", "fast"]
# A user window read with int8 kernels (``guard.user_int8``) is read again exactly when its
# score lies within this many logits of the flag or block threshold of its text's length: the
# largest difference between the two readings (one window a call, the shipped user head) over
# the guard corpus's user windows, rounded up to the next tenth: `propylon eval guard` prints it
# (0.62 over 10,897 windows, docs/benchmarks.md).
REREAD_MARGIN = 0.7


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Scores at or above ``flag`` are suspicious; at or above ``block``, an injection, when
    the heuristics corroborate it (``corroborate``).

    ``by_length`` holds calibrated ``(below_chars, flag, block)`` rows, shortest first: a long
    text is scored as the maximum over more windows, so its benign scores run higher, and each
    length bucket gets the thresholds that keep its own benign texts within the targets.
    ``flag``/``block`` apply beyond the last row (and to every length when there are none).

    ``corroborate``: a score at or above ``block`` blocks only when the heuristics' own score
    reaches this too, i.e. a rule aimed at the model's instructions fired. The classifier alone
    flags and never blocks: on sources it was not trained on, its confident errors are role
    prompts and trigger-word questions a user legitimately sends (docs/benchmarks.md), and a
    wrongly flagged request still reaches the model while a wrongly blocked one is refused.
    ``None``: the score alone decides (the heuristics-only detector, whose score is theirs).
    """

    flag: float
    block: float
    by_length: tuple[tuple[int, float, float], ...] = ()
    corroborate: float | None = None

    def for_length(self, chars: int) -> Thresholds:
        """The thresholds of a text of ``chars`` characters."""
        for below, flag, block in self.by_length:
            if chars < below:
                return Thresholds(flag, block, corroborate=self.corroborate)
        return Thresholds(self.flag, self.block, corroborate=self.corroborate)

    @classmethod
    def stored(cls, calibrated: dict[str, Any], fallback: Thresholds) -> Thresholds:
        """The thresholds as training stores them with the weights (``fitting.py``)."""
        corroborate = calibrated.get("corroborate", fallback.corroborate)
        return cls(
            float(calibrated.get("flag", fallback.flag)),
            float(calibrated.get("block", fallback.block)),
            tuple((int(r), float(f), float(b)) for r, f, b in calibrated.get("by_length", [])),
            None if corroborate is None else float(corroborate),
        )

    def overridden(self, flag: float | None, block: float | None) -> Thresholds:
        """A configured value holds for every length; a calibrated one only for its bucket."""
        return Thresholds(
            flag or self.flag,
            block or self.block,
            tuple((r, flag or f, block or b) for r, f, b in self.by_length),
            self.corroborate,
        )

    def label(self, score: float, heuristic: float | None = None, agree: bool = True) -> Label:
        """The label of a text scoring ``score``, ``heuristic`` of it from the heuristics
        (unknown: taken as corroborating); ``agree``: its windows agree (``windows_agree``)."""
        if score < self.flag:
            return "benign"
        if self.corroborate is None or heuristic is None or heuristic >= self.corroborate:
            return "injection" if score >= self.block else "suspicious"
        return "suspicious" if agree else "benign"


def windows_agree(own: list[float], decoded: list[float], flag: float) -> bool:
    """Whether the classifier's windows of one text agree that it is suspicious: a text of one
    window, two of its windows at or above ``flag``, or a decoded payload (``features.
    split_units``) at or above it. One window alone in a long text is not enough: a long benign
    text has many windows, each a chance of one confident error, so its maximum rises with
    length while its second-highest window does not (docs/benchmarks.md)."""
    if len(own) <= 1 or max(decoded, default=0.0) >= flag:
        return True
    return sorted(own)[-2] >= flag


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the detector concluded about one text."""

    source: Source
    label: Label
    score: float  # max(heuristic_score, classifier_score)
    heuristic_score: float
    classifier_score: float | None  # None when the heuristics were decisive or it is off
    signals: tuple[str, ...]  # "family:rule" of every heuristic that fired

    @property
    def is_injection(self) -> bool:
        return self.label == "injection"

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "label": self.label,
            "score": round(self.score, 4),
            "heuristic_score": round(self.heuristic_score, 4),
            "classifier_score": None
            if self.classifier_score is None
            else round(self.classifier_score, 4),
            "signals": list(self.signals),
        }


# With the classifier, a user text scoring at or above its block threshold is blocked only when
# the heuristics score it this much too (``Thresholds.corroborate``): their own flag threshold,
# i.e. a rule aimed at the model's instructions fired. Not tuned. Training stores it with the
# thresholds; weights from before it get it here.
USER_CORROBORATE = 0.5
# Without the classifier, a score is the heuristics' alone: one strong rule blocks.
HEURISTIC_THRESHOLDS: dict[str, Thresholds] = {
    "user": Thresholds(flag=0.5, block=0.85),
    "retrieved": Thresholds(flag=0.5, block=0.85),
}


def calibrated_thresholds(
    classifier: InjectionClassifier | None,
    overrides: dict[str, dict[str, float | None]] | None = None,
) -> dict[str, Thresholds]:
    """The thresholds calibrated at training time (stored with the weights), or the
    heuristics-only ones, with any explicitly configured value taking precedence."""
    out: dict[str, Thresholds] = {}
    stored = classifier.metadata.get("thresholds", {}) if classifier is not None else {}
    for source, fallback in HEURISTIC_THRESHOLDS.items():
        given = (overrides or {}).get(source, {})
        if classifier is not None and source == "user":  # weights from before corroboration
            fallback = replace(fallback, corroborate=USER_CORROBORATE)
        base = Thresholds.stored(stored.get(source, {}), fallback)
        out[source] = base.overridden(given.get("flag"), given.get("block"))
    return out


class InjectionDetector:
    """Scores texts for prompt injection.

    ``classifier`` and ``embedder`` are optional: without them only the heuristics run.
    Verdicts are cached by text (conversations resend their history every turn, so most
    messages of a request were already scored). ``record`` wraps the embedder's calls (the
    request log's ``record_embeddings``: see the module docstring).
    """

    def __init__(
        self,
        classifier: InjectionClassifier | None,
        embedder: EmbeddingModel | None,
        thresholds: dict[str, Thresholds] | None = None,
        *,
        max_windows: int = 32,
        max_scan_chars: int = 32_768,
        cache_size: int = 4096,
        record: Record | None = None,
        first_stage: FirstStage | None = None,
        user_embedder: EmbeddingModel | None = None,
    ) -> None:
        self._classifier = classifier if embedder is not None else None
        self.first_stage = first_stage if self._classifier is not None else None
        # Each reader, and the same wrapped by ``record`` for jobs and runs: "exact" (MiniLM as
        # the heads were fitted on), and "fast" (int8 kernels) for user input when given.
        self._readers: dict[Reader, tuple[EmbeddingService, EmbeddingService]] = {}
        models: dict[Reader, EmbeddingModel | None] = {"exact": embedder, "fast": user_embedder}
        for reader, model in models.items():
            if model is not None and embedder is not None:
                plain = ModelEmbeddings(model)
                self._readers[reader] = (plain, record(plain) if record is not None else plain)
        self.fast_reads = 0  # windows of user input the fast reader scored
        self.rereads = 0  # of them, those it left too near a threshold: read exactly
        self.thresholds = thresholds or calibrated_thresholds(self._classifier)
        self._max_windows = max_windows
        self._max_scan_chars = max_scan_chars
        self._cache: OrderedDict[bytes, Verdict] = OrderedDict()
        self._cache_size = cache_size

    @property
    def reads_user_int8(self) -> bool:
        """Whether user input is read by a model of its own first (``guard.user_int8``)."""
        return "fast" in self._readers

    def int8_windows(self) -> dict[str, int]:
        """The windows of user input the int8 reader scored, by outcome: ``kept`` (its score
        decided) or ``reread`` (near a threshold: the exact model's score decided)."""
        return {"kept": self.fast_reads - self.rereads, "reread": self.rereads}

    async def scan(
        self,
        text: str,
        source: Source = "user",
        *,
        classify: bool = True,
        principal: Principal | None = None,
        parent_id: str | None = None,
    ) -> Verdict:
        """The verdict on one text (``classify=False``: the heuristics alone)."""
        (verdict,) = await self.scan_many(
            [text], source, classify=classify, principal=principal, parent_id=parent_id
        )
        return verdict

    async def scan_many(
        self,
        texts: list[str],
        source: Source = "user",
        *,
        classify: bool = True,
        principal: Principal | None = None,
        parent_id: str | None = None,
    ) -> list[Verdict]:
        """Verdicts on several texts, embedding every window that needs it in one batch.
        At most ``max_scan_chars`` characters are read in all (see ``excerpts``). With
        ``parent_id`` (a job or run), the embeddings are recorded as an internal call for it
        and ``principal``'s tenant (see the module docstring)."""
        thresholds = self.thresholds[source]
        classify = classify and self._classifier is not None
        cut = excerpts(texts, self._max_scan_chars)
        if cut is not texts:  # a long request: the scan below takes milliseconds
            await asyncio.sleep(0)  # let other requests run first
        texts = cut
        keys = [_key(source, classify, text) for text in texts]
        out: list[Verdict | None] = [self._cached(key) for key in keys]
        pending: list[tuple[int, list[heuristics.Signal], list[str], int]] = []
        for i, text in enumerate(texts):
            if out[i] is not None:
                continue
            signals = heuristics.scan(text)
            h = heuristics.heuristic_score(signals)
            of_length = thresholds.for_length(len(text))
            if not classify or h >= of_length.block or not text.strip():
                out[i] = _verdict(source, of_length, h, None, signals)
            else:
                own, decoded = split_units(text, source, self._max_windows)
                pending.append((i, signals, own + decoded, len(own)))
        if pending:
            windows = [w for _, _, ws, _ in pending for w in ws]
            lengths = [len(texts[i]) for i, _, ws, _ in pending for _ in ws]
            # A window that is its whole text (most messages) reuses the text's scan.
            scanned = {texts[i]: signals for i, signals, _, _ in pending}
            scores = await self._classify(windows, source, principal, parent_id, lengths, scanned)
            offset = 0
            for i, signals, ws, count in pending:
                mine = [float(v) for v in scores[offset : offset + len(ws)]]
                offset += len(ws)
                of_length = thresholds.for_length(len(texts[i]))
                out[i] = _verdict(
                    source,
                    of_length,
                    heuristics.heuristic_score(signals),
                    max(mine),
                    signals,
                    windows_agree(mine[:count], mine[count:], of_length.flag),
                )
        verdicts = [v for v in out if v is not None]
        for key, verdict in zip(keys, verdicts, strict=True):
            self._remember(key, verdict)
        return verdicts

    async def _classify(
        self,
        texts: list[str],
        source: Source,
        principal: Principal | None,
        parent_id: str | None,
        lengths: list[int],
        scanned: dict[str, list[heuristics.Signal]] | None = None,
    ) -> np.ndarray[Any, Any]:
        """The classifier's score of each window; ``lengths``: of the text each belongs to;
        ``scanned``: the heuristics' signals of texts already scanned, by text."""
        scanned = scanned or {}
        lexical = np.zeros((len(texts), LEXICAL_SIZE), dtype=np.float32)
        for row, text in enumerate(texts):
            signals = scanned.get(text)
            lexical[row] = lexical_features(
                text, heuristics.scan(text) if signals is None else signals
            )

        async def read(rows: list[int], reader: Reader) -> np.ndarray[Any, Any]:
            assert self._classifier is not None
            chosen = [texts[i] for i in rows]
            embedded = await self._embed(chosen, source, principal, parent_id, reader)
            vectors = np.asarray(embedded.vectors, dtype=np.float32)
            return self._classifier.probability(vectors, lexical[rows], source, chosen)

        async def full(rows: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
            if source != "user" or "fast" not in self._readers:
                return await read(rows.tolist(), "exact")
            scores = await read(rows.tolist(), "fast")
            self.fast_reads += len(rows)
            thresholds = self.thresholds[source]
            near = [
                i
                for i, score in enumerate(scores)
                if near_threshold(float(score), thresholds.for_length(lengths[rows[i]]))
            ]
            if near:  # the exact reading decides where the fast one is not clearly on a side
                self.rereads += len(near)
                scores[near] = await read([int(rows[i]) for i in near], "exact")
            return scores

        if self.first_stage is not None and source == "user":
            t = self.thresholds[source]
            by_length = [list(row) for row in t.by_length]
            table = {"flag": t.flag, "block": t.block, "by_length": by_length}
            of_text = np.array(lengths, dtype=np.int64)
            return await self.first_stage.scores(texts, lexical, table, full, of_text)
        return await full(np.arange(len(texts)))

    async def _embed(
        self,
        texts: list[str],
        source: Source,
        principal: Principal | None,
        parent_id: str | None,
        reader: Reader = "exact",
    ) -> Embeddings:
        """MiniLM's vectors of ``texts`` (by ``reader``): part of the caller's own call, or
        with ``parent_id`` (a job or run) recorded as an internal call of its own."""
        plain, recorded = self._readers[reader]
        if parent_id is None:
            return await plain.embed(texts)
        call = CallInfo(
            principal=principal, endpoint="guard", origin="internal", parent_id=parent_id
        )
        call.report(UsageReported(None))  # a local model: no tokens billed, no cost
        request = {"model": GUARD_MODEL, "metadata": {"guard": source, "windows": len(texts)}}
        return await recorded.embed(texts, request, call)

    def _cached(self, key: bytes) -> Verdict | None:
        verdict = self._cache.get(key)
        if verdict is not None:
            self._cache.move_to_end(key)
        return verdict

    def _remember(self, key: bytes, verdict: Verdict) -> None:
        self._cache[key] = verdict
        self._cache.move_to_end(key)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)


def near_threshold(score: float, thresholds: Thresholds, margin: float = REREAD_MARGIN) -> bool:
    """Whether ``score`` (read with int8 kernels) lies within ``margin`` logits of the flag or
    the block threshold, where the exact kernels could put it on the other side."""
    logit = _logit(score)
    return any(abs(logit - _logit(t)) < margin for t in (thresholds.flag, thresholds.block))


def as_served(
    exact: Sequence[float], fast: Sequence[float], thresholds: Sequence[Thresholds]
) -> tuple[list[float], int]:
    """Window scores as the user path serves them when both readings are known (evaluations):
    each fast (int8) reading, or the exact one where the fast one is ``near_threshold`` of its
    window's ``thresholds``; and how many windows took the exact reading."""
    near = [near_threshold(f, t) for f, t in zip(fast, thresholds, strict=True)]
    served = [e if n else f for e, f, n in zip(exact, fast, near, strict=True)]
    return served, sum(near)


def _logit(p: float) -> float:
    p = min(max(p, 1e-7), 1 - 1e-7)
    return math.log(p / (1 - p))


def excerpts(texts: list[str], budget: int) -> list[str]:
    """``texts`` cut to ``budget`` characters in all: the shortest are kept whole while each
    fits its share of what is left; a longer one keeps its beginning and its end (where
    instructions usually sit), joined by a newline."""
    if sum(map(len, texts)) <= budget:
        return texts
    allowed = [0] * len(texts)
    left = budget
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    for done, i in enumerate(order):
        allowed[i] = min(len(texts[i]), left // (len(texts) - done))
        left -= allowed[i]
    out = []
    for text, allowance in zip(texts, allowed, strict=True):
        if len(text) <= allowance:
            out.append(text)
        else:
            half = allowance // 2
            out.append(text[:half] + "\n" + text[len(text) - (allowance - half) :])
    return out


def _key(source: str, classify: bool, text: str) -> bytes:
    return hashlib.blake2b(
        f"{source}\0{classify:d}\0{text}".encode("utf-8", "surrogatepass"), digest_size=16
    ).digest()


def _verdict(
    source: Source,
    thresholds: Thresholds,
    h: float,
    c: float | None,
    signals: list[heuristics.Signal],
    agree: bool = True,
) -> Verdict:
    score = max(h, c if c is not None else 0.0)
    return Verdict(
        source=source,
        label=thresholds.label(score, h, agree),
        score=score,
        heuristic_score=h,
        classifier_score=c,
        signals=tuple(dict.fromkeys(f"{s.family}:{s.rule}" for s in signals)),
    )


def load_first_stage(static: StaticVectors | None = None) -> FirstStage:
    """The shipped first-stage head on ``static`` (default: the shipped static table), each
    checked against the other."""
    if static is None:
        from propylon.local.static import StaticEmbedder

        static = StaticEmbedder.load()
    return FirstStage(static, FirstStageHead.load(static_sha256=static.weights_sha256))


@asynccontextmanager
async def open_detector(
    settings: GuardSettings,
    embedder: EmbeddingModel | None,
    *,
    threads: int = 1,
    int8: bool = False,
    record: Record | None = None,
    static: StaticVectors | None = None,
    user_embedder: EmbeddingModel | None = None,
) -> AsyncIterator[InjectionDetector]:
    """The detector the guard stage runs: shipped weights, and the local MiniLM (loaded here,
    about 0.3 s, unless ``embedder`` is one already running), its calls wrapped by ``record``;
    ``user_embedder``, when given, reads user input instead (``guard.user_int8``).
    Heuristics only when ``settings.classifier`` is off."""
    overrides: dict[str, dict[str, float | None]] = {
        "user": {"flag": settings.user_flag_threshold, "block": settings.user_block_threshold},
        "retrieved": {
            "flag": settings.retrieved_flag_threshold,
            "block": settings.retrieved_block_threshold,
        },
    }
    if not settings.classifier:
        thresholds = calibrated_thresholds(None, overrides)
        yield InjectionDetector(
            None,
            None,
            thresholds,
            max_windows=settings.max_windows,
            max_scan_chars=settings.max_scan_chars,
        )
        return
    from propylon.local.minilm import MiniLMEmbedder

    classifier = await asyncio.to_thread(InjectionClassifier.load)
    thresholds = calibrated_thresholds(classifier, overrides)
    first_stage = (
        await asyncio.to_thread(load_first_stage, static) if settings.first_stage else None
    )
    owned = None
    if embedder is None:
        owned = await asyncio.to_thread(MiniLMEmbedder.load, threads=threads, int8=int8)
        embedder = owned
    try:
        yield InjectionDetector(
            classifier,
            embedder,
            thresholds,
            max_windows=settings.max_windows,
            max_scan_chars=settings.max_scan_chars,
            record=record,
            first_stage=first_stage,
            user_embedder=user_embedder,
        )
    finally:
        if owned is not None:
            owned.close()
