"""`propylon eval extractive`: does ``local/extractive`` answer when its sources hold the
answer, and say they do not when they do not?

Answerable cases are SciFact claims with the abstracts that support or refute them (their
gold documents) among the abstracts sharing the most rare words with the claim, five sources
in all. A case counts as answered with a gold citation when the reply quotes a sentence of a
gold abstract. Unanswerable cases are questions about other topics (CLINC150 and Banking77
user questions: balances, cards, reminders) over the five SciFact abstracts nearest to them in
words; a case counts as refused when the reply quotes nothing.

The answer threshold (cosine similarity of the best sentence) is chosen on the dev split
(SciFact train claims, the questions' train split) and reported on the held-out split
(SciFact test claims, the questions' dev split), which played no part in choosing it.
"""

from __future__ import annotations

import gzip
import json
import math
import random
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from propylon.gateway.protocol import EmbeddingModel, Embeddings, JSONObject
from propylon.local.extractive import ANSWER_THRESHOLD, ExtractiveChatModel
from propylon.local.sentences import NEIGHBOUR_WEIGHT, RANKING, SOURCE_WEIGHT, Ranking, terms

Split = Literal["dev", "held_out"]
SOURCES_PER_CASE = 5
SECTION = "extractive"
GOAL_REFUSED = 0.90
GOAL_ANSWERED = 0.85
LENGTHS = (("≤ 8 words", 8), ("9-14 words", 14), ("≥ 15 words", 10**9))
SYSTEM = (
    "Answer the question using only the sources below. Cite each statement with [n]. If the "
    "sources do not contain the answer, say so."
)


@dataclass(frozen=True, slots=True)
class Case:
    question: str
    documents: list[tuple[str, str]]  # (document id, abstract), as numbered sources 1..n
    gold: frozenset[str]  # empty: the sources cannot answer
    kind: str = "SciFact claim"  # where the question comes from: the report's groups

    @property
    def length(self) -> str:
        """The question's length group in the report."""
        words = len(self.question.split())
        return next(name for name, most in LENGTHS if words <= most)

    def request(self) -> JSONObject:
        blocks = "\n".join(
            f'<source id="{n}">{text}</source>' for n, (_, text) in enumerate(self.documents, 1)
        )
        return {
            "messages": [
                {"role": "system", "content": f"{SYSTEM}\n\n{blocks}"},
                {"role": "user", "content": self.question},
            ]
        }


@dataclass(frozen=True, slots=True)
class Outcome:
    """One case's result: for an answerable one, answered citing gold (and first quote from
    gold); for an unanswerable one, refused."""

    kind: str
    length: str
    answerable: bool
    success: bool
    answered: bool = False
    first_gold: bool = False


@dataclass(frozen=True, slots=True)
class Score:
    threshold: float
    answerable: int
    answered_gold: int  # answered, quoting a sentence of a gold abstract
    answered: int  # answered at all
    unanswerable: int
    refused: int
    first_gold: int = 0  # answered, the first quote from a gold abstract
    cpu_ms: float = 0.0  # CPU time per answer, embedding included when not cached
    outcomes: tuple[Outcome, ...] = ()

    @property
    def answered_gold_rate(self) -> float:
        return self.answered_gold / self.answerable if self.answerable else 0.0

    @property
    def refused_rate(self) -> float:
        return self.refused / self.unanswerable if self.unanswerable else 0.0


class _Corpus:
    """SciFact abstracts, and the ones sharing the most rare words with a text."""

    def __init__(self, abstracts: dict[str, str]) -> None:
        self.abstracts = abstracts
        self._postings: dict[str, list[str]] = defaultdict(list)
        for doc_id, text in abstracts.items():
            for term in set(terms(text)):
                self._postings[term].append(doc_id)
        total = len(abstracts)
        self._idf = {t: math.log(1 + total / len(ids)) for t, ids in self._postings.items()}

    def nearest(self, text: str, n: int, exclude: frozenset[str]) -> list[str]:
        scores: defaultdict[str, float] = defaultdict(float)
        for term in set(terms(text)):
            for doc_id in self._postings.get(term, ()):
                scores[doc_id] += self._idf[term]
        ranked = [d for d, _ in sorted(scores.items(), key=lambda x: (-x[1], x[0]))]
        return [d for d in ranked if d not in exclude][:n]


def load_cases(
    scifact: Path, questions: Path, split: Split, limit: int | None = None
) -> list[Case]:
    """The answerable and unanswerable cases of ``split`` (at most ``limit`` of each)."""
    with gzip.open(scifact / "corpus.jsonl.gz", "rt", encoding="utf-8") as handle:
        corpus = _Corpus({(row := json.loads(line))["_id"]: row["text"] for line in handle})
    claims = {
        row["_id"]: row["text"]
        for row in map(json.loads, (scifact / "queries.jsonl").read_text("utf-8").splitlines())
    }
    gold: dict[str, set[str]] = defaultdict(set)
    qrels = scifact / "qrels" / ("train.tsv" if split == "dev" else "test.tsv")
    for line in qrels.read_text("utf-8").splitlines()[1:]:
        query_id, doc_id, _ = line.split("\t")
        gold[query_id].add(doc_id)
    wanted = "train" if split == "dev" else "dev"
    off_topic = [
        (row["text"], str(row.get("source", "off-topic")))
        for row in map(json.loads, questions.read_text("utf-8").splitlines())
        if row.get("split") == wanted
    ]
    rng = random.Random(21)
    answerable = sorted(gold)
    rng.shuffle(answerable)
    rng.shuffle(off_topic)
    cases: list[Case] = []
    for query_id in answerable[:limit]:
        golds = frozenset(gold[query_id])
        near = corpus.nearest(claims[query_id], SOURCES_PER_CASE, golds)
        ids = sorted(golds)[:SOURCES_PER_CASE] + near
        ids = ids[:SOURCES_PER_CASE]
        rng.shuffle(ids)  # where the gold abstract sits is no hint
        cases.append(Case(claims[query_id], [(d, corpus.abstracts[d]) for d in ids], golds))
    for question, origin in off_topic[:limit]:
        ids = corpus.nearest(question, SOURCES_PER_CASE, frozenset())
        documents = [(d, corpus.abstracts[d]) for d in ids]
        cases.append(Case(question, documents, frozenset(), f"{origin} question"))
    return cases


class CachedEmbedder:
    """Embeds each distinct text once across the whole evaluation (every threshold)."""

    def __init__(self, inner: EmbeddingModel) -> None:
        self._inner = inner
        self._vectors: dict[str, list[float]] = {}

    def remember(self, vectors: dict[str, list[float]]) -> None:
        """Vectors already made for these texts (by the same model), used as they are."""
        self._vectors.update(vectors)

    async def embed(self, texts: list[str], request: JSONObject | None = None) -> Embeddings:
        missing = list(dict.fromkeys(t for t in texts if t not in self._vectors))
        if missing:
            embedded = await self._inner.embed(missing)
            self._vectors.update(zip(missing, embedded.vectors, strict=True))
        return Embeddings([self._vectors[t] for t in texts], 0)


async def score(
    cases: Sequence[Case], embedder: EmbeddingModel, threshold: float, ranking: Ranking = RANKING
) -> Score:
    """Run the model with ``threshold`` (and ``ranking``) over ``cases``."""
    model = ExtractiveChatModel(embedder, answer_threshold=threshold, ranking=ranking)
    outcomes: list[Outcome] = []
    started = time.process_time()
    for case in cases:
        reply = await model.complete(case.request())
        quoted = [case.documents[c["source"] - 1][0] for c in reply["propylon"]["citations"]]
        outcomes.append(
            Outcome(
                case.kind,
                case.length,
                answerable=bool(case.gold),
                success=bool(set(quoted) & case.gold) if case.gold else not quoted,
                answered=bool(quoted),
                first_gold=bool(quoted) and quoted[0] in case.gold,
            )
        )
    cpu_ms = 1000 * (time.process_time() - started) / max(1, len(cases))
    answerable = [o for o in outcomes if o.answerable]
    unanswerable = [o for o in outcomes if not o.answerable]
    return Score(
        threshold,
        len(answerable),
        sum(o.success for o in answerable),
        sum(o.answered for o in answerable),
        len(unanswerable),
        sum(o.success for o in unanswerable),
        sum(o.first_gold for o in answerable),
        cpu_ms,
        tuple(outcomes),
    )


ALTERNATIVES: tuple[tuple[str, Ranking], ...] = (
    (
        "before: 0.6 × cosine + 0.4 × BM25, quotes in rank order",
        Ranking(blend=True, each_source_first=False),
    ),
    ("cosine alone, quotes in rank order", Ranking(0.0, 0.0, each_source_first=False)),
    ("shipped ranking, quotes in rank order", Ranking(each_source_first=False)),
)
"""Rankings measured beside the shipped one on the dev split, at the chosen threshold: where
the shipped model's results come from."""


async def alternatives(
    cases: Sequence[Case], embedder: EmbeddingModel, shipped: Score
) -> list[tuple[str, Score]]:
    """Each of ``ALTERNATIVES`` on ``cases`` at the threshold of ``shipped``, then it."""
    found = [
        (label, await score(cases, embedder, shipped.threshold, ranking))
        for label, ranking in ALTERNATIVES
    ]
    return [*found, ("shipped: its ranking, the best sentence of each source first", shipped)]


THRESHOLDS = tuple(round(0.20 + 0.02 * i, 2) for i in range(21))  # 0.20 … 0.60


def choose(scores: Sequence[Score]) -> Score:
    """The threshold answering most answerable cases with a gold citation among those that
    refuse at least ``GOAL_REFUSED`` of the unanswerable ones (else the one refusing most);
    of equals, the highest, which refuses more of what the dev split did not show."""
    meeting = [s for s in scores if s.refused_rate >= GOAL_REFUSED]
    if not meeting:
        return max(scores, key=lambda s: (s.refused_rate, s.answered_gold_rate))
    return max(meeting, key=lambda s: (s.answered_gold_rate, s.threshold))


def render_markdown(
    dev: Sequence[Score],
    chosen: Score,
    held_out: Score,
    command: str,
    ablation: Sequence[tuple[str, Score]] = (),
) -> str:
    def met(value: float, goal: float) -> str:
        return "met" if value >= goal else "**missed**"

    groups = "\n".join(
        f"| {label} | {len(items)} | {_rate(items)} |"
        for label, items in _groups(held_out.outcomes)
    )
    rows = "\n".join(
        f"| {s.threshold:.2f} | {s.answered_gold_rate:.1%} | {s.answered / s.answerable:.1%} | "
        f"{s.refused_rate:.1%} |"
        for s in dev
    )
    compared = "\n".join(
        f"| {label} | {s.answered_gold_rate:.1%} | {s.first_gold / s.answerable:.1%} | "
        f"{s.refused_rate:.1%} |"
        for label, s in ablation
    )
    where = (
        f"""
Where the results come from: the dev split at the chosen threshold ({chosen.threshold:.2f}),
the shipped model beside rankings it replaced or leaves out:

| dev split, threshold {chosen.threshold:.2f} | answered citing gold | first quote from gold | \
unanswerable refused |
|---|---:|---:|---:|
{compared}
"""
        if ablation
        else ""
    )
    measured = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    shipped = (
        "the shipped `ANSWER_THRESHOLD`"
        if math.isclose(chosen.threshold, ANSWER_THRESHOLD)
        else f"**not** the shipped `ANSWER_THRESHOLD` ({ANSWER_THRESHOLD:.2f}): update it"
    )
    return f"""## Extractive answers: answered when the sources hold it, refused otherwise

Measured {measured} with `{command}`.
`local/extractive` (all-MiniLM-L6-v2) with {SOURCES_PER_CASE} sources a question, in a
RAG-shaped prompt. Answerable: SciFact claims whose sources include their gold
abstracts among the abstracts sharing the most rare words with the claim; success is an answer
quoting a sentence of a gold abstract. Unanswerable: CLINC150/Banking77 user questions (other
topics) over the {SOURCES_PER_CASE} SciFact abstracts nearest to them in words; success is a
refusal ("the provided context does not contain an answer").

Quotes: up to three sentences with a cosine similarity of at least the threshold, the best of
each source first, ranked by cosine similarity plus {NEIGHBOUR_WEIGHT} × the best of the
sentences beside it plus {SOURCE_WEIGHT} × its source's topicality (the mean of the source's
three best), weights chosen on the dev split (`propylon.local.sentences`).

Threshold chosen on the **dev** split ({dev[0].answerable} SciFact train claims,
{dev[0].unanswerable} questions of the train split): {chosen.threshold:.2f}, {shipped}.

| held-out split | cases | result | goal | |
|---|---:|---:|---:|---|
| answerable, answered citing a gold abstract | {held_out.answerable} | \
{held_out.answered_gold_rate:.1%} ({held_out.answered_gold}) | ≥ {GOAL_ANSWERED:.0%} | \
{met(held_out.answered_gold_rate, GOAL_ANSWERED)} |
| answerable, answered at all | {held_out.answerable} | \
{held_out.answered / held_out.answerable:.1%} ({held_out.answered}) | | |
| answerable, first quote from a gold abstract | {held_out.answerable} | \
{held_out.first_gold / held_out.answerable:.1%} ({held_out.first_gold}) | | |
| unanswerable, refused | {held_out.unanswerable} | {held_out.refused_rate:.1%} \
({held_out.refused}) | ≥ {GOAL_REFUSED:.0%} | {met(held_out.refused_rate, GOAL_REFUSED)} |
| CPU time per answer, embedding its sentences included | {len(held_out.outcomes)} | \
{held_out.cpu_ms:.0f} ms | | |

Held-out: the {held_out.answerable} SciFact test claims with gold abstracts and the \
{held_out.unanswerable} questions of the dev split, never used to choose the threshold.

Held-out split by kind and length of question (success: answered citing a gold abstract
for claims, refused for the other questions):

| held-out group | cases | success |
|---|---:|---:|
{groups}

{where}
Dev split, by threshold (cosine similarity the best sentence needs):

| threshold | answered citing gold | answered | unanswerable refused |
|---:|---:|---:|---:|
{rows}
"""


def _groups(outcomes: Sequence[Outcome]) -> list[tuple[str, list[Outcome]]]:
    """The outcomes by kind, then each kind by length (lengths in ``LENGTHS`` order)."""
    kinds = sorted({o.kind for o in outcomes}, key=lambda k: (k != "SciFact claim", k))
    groups: list[tuple[str, list[Outcome]]] = []
    for kind in kinds:
        of_kind = [o for o in outcomes if o.kind == kind]
        groups.append((f"{kind}s, all", of_kind))
        for length, _ in LENGTHS:
            of_length = [o for o in of_kind if o.length == length]
            if of_length:
                groups.append((f"{kind}s, {length}", of_length))
    return groups


def _rate(outcomes: Sequence[Outcome]) -> str:
    succeeded = sum(o.success for o in outcomes)
    return f"{succeeded / len(outcomes):.1%} ({succeeded})" if outcomes else "–"
