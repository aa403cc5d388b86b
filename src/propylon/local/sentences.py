"""Sentences of a text, and how relevant each one is to a question.

Both run on every request to the extractive model, over a few thousand words, so splitting
is regular expressions and lexical scoring is BM25 over Python containers: a few
milliseconds. An embedding model, when there is one, adds similarity of meaning.
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from propylon.errors import PropylonError
from propylon.gateway.protocol import EmbeddingModel

logger = logging.getLogger(__name__)

RERANK_SEMANTIC_WEIGHT = 0.6
"""For reranking independent documents (``blended_relevance``): the share of embedding
similarity (counted above ``RERANK_MIN_SIMILARITY``); the rest is BM25, each scaled so the best
document scores 1. This was the extractive model's blend before its context ranking; its
measured effect on SciFact is in docs/benchmarks.md, "Reranking"."""
RERANK_MIN_SIMILARITY = 0.3

NEIGHBOUR_WEIGHT = 0.2
"""With an embedder, a sentence's rank adds this share of the best cosine similarity of the
sentences beside it in its source: a quote whose neighbours are on topic sits in the passage
that answers, not in a stray sentence that happens to match."""

SOURCE_WEIGHT = 0.5
"""With an embedder, a sentence's rank adds this share of its source's topicality: the mean
cosine similarity of the source's three best sentences. Both weights were chosen on the dev
split of `propylon eval extractive` only (SciFact train claims), with raw cosine similarity
as the base: on its 300 claims, cosine alone put a gold sentence first for 68 %, these two
terms for 69-70 % (with quotes from different sources first, see ``ExtractiveChatModel``),
while adding BM25 at any weight tried (0.05-0.4) lowered it: there the wrong sources are
chosen for sharing the claim's rare words, so matching words is what misleads."""

MAX_EMBEDDED_SENTENCES = 128


@dataclass(frozen=True, slots=True)
class Ranking:
    """How the extractive model ranks sentences and picks its quotes: the shipped way
    (``RANKING``), or one of the alternatives `propylon eval extractive` measures beside it.

    ``blend``: rank by the BM25 + cosine blend of ``blended_relevance`` instead (the model
    before its context ranking); ``each_source_first``: quote the best sentence of each
    relevant source before a second one of any (else: in rank order).
    """

    neighbour_weight: float = NEIGHBOUR_WEIGHT
    source_weight: float = SOURCE_WEIGHT
    blend: bool = False
    each_source_first: bool = True


RANKING = Ranking()
"""Above this many sentences only the lexically best are embedded: the bundled MiniLM takes
about 6 ms a sentence on one CPU thread, so this bounds the wait near 0.8 s."""

MAX_SENTENCE_CHARS = 600
"""Longer runs without sentence punctuation (tables, lists run together) are cut at a space."""

# Sentence punctuation with any closing quotes or brackets, before a space; or a line break.
_CUT = re.compile(r"[.!?…]+[\"'”’»)\]]*(?=\s|\Z)|\n")
_SPACE = re.compile(r"\s*")
_WORD_BEFORE = re.compile(r"[\w.]+\Z")
_LIST_MARKER = re.compile(r"(?:[-*•+]|\d{1,3}[.)]|#{1,6})[ \t]+")
_HAS_WORD = re.compile(r"\w")
_WHOLE_LINE = re.compile(r"[ \t]*(?:\||[-*•+][ \t]|\d{1,3}[.)][ \t])")
# Word lists read better as text than as a hundred quoted strings.
_ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof st sr jr vs no nr fig figs approx ca cf al inc ltd co corp dept jan feb"  # noqa: SIM905
    " mar apr jun jul aug sep sept oct nov dec".split()
)

_TERM = re.compile(r"\w+")
_STOPWORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is
    it its itself just me more most my myself no nor not now of off on once only or other our
    ours ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we
    were what when where which while who whom why will with would you your yours yourself
    yourselves tell please""".split()  # noqa: SIM905
)


def split_sentences(text: str) -> list[tuple[int, int]]:
    """The ``(start, end)`` spans of the sentences in ``text``, in order.

    ``text[start:end]`` is one sentence, verbatim, without surrounding whitespace or a leading
    list marker. A sentence ends at ``.``, ``!`` or ``?`` followed by a space, unless a
    lower-case word follows or the word before is an abbreviation or an initial; at a blank
    line; and at a line break unless the next line starts in lower case (a wrapped line).
    """
    spans: list[tuple[int, int]] = []
    start = 0
    for cut in _CUT.finditer(text):
        if _ends_sentence(text, cut):
            _add_sentence(spans, text, start, cut.end())
            start = cut.end()
    _add_sentence(spans, text, start, len(text))
    return spans


def _ends_sentence(text: str, cut: re.Match[str]) -> bool:
    space = _SPACE.match(text, cut.end())
    following = space.end() if space else cut.end()
    if following == len(text):
        return True
    if cut.group() == "\n":
        return "\n" in text[cut.end() : following] or not text[following].islower()
    if "\n" in text[cut.end() : following]:
        return True
    if text[following].islower():
        return False
    line = text.rfind("\n", 0, cut.start()) + 1
    if _WHOLE_LINE.match(text, line):
        return False  # a table row or a list item is quoted whole
    if cut.group().startswith(".") and not cut.group().startswith(".."):
        word = _WORD_BEFORE.search(text, max(0, cut.start() - 24), cut.start())
        if word is not None:
            before = word.group()
            if "." in before or before.lower() in _ABBREVIATIONS:
                return False
            if len(before) == 1 and before.isupper():
                return False
    return True


def _add_sentence(spans: list[tuple[int, int]], text: str, start: int, end: int) -> None:
    while start < end and text[start].isspace():
        start += 1
    marker = _LIST_MARKER.match(text, start, end)
    if marker is not None:
        start = marker.end()
    while end > start and text[end - 1].isspace():
        end -= 1
    while end - start > MAX_SENTENCE_CHARS:
        cut = text.rfind(" ", start + 1, start + MAX_SENTENCE_CHARS)
        if cut == -1:
            cut = start + MAX_SENTENCE_CHARS
        _add_sentence(spans, text, start, cut)
        start = cut
        while start < end and text[start].isspace():
            start += 1
    if _HAS_WORD.search(text, start, end):
        spans.append((start, end))


def terms(text: str) -> list[str]:
    """The words of ``text`` that carry meaning: case-folded, stop words removed, and with
    common English endings stripped so that "refunds", "refunded" and "refund" match."""
    return [
        _stem(word)
        for word in _TERM.findall(text.casefold())
        if word not in _STOPWORDS and (len(word) > 1 or word.isdigit())
    ]


def _stem(word: str) -> str:
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes")):
        word = word[:-2]
    elif len(word) > 5 and word.endswith("ing"):
        word = word[:-3]
    elif len(word) > 4 and word.endswith("ed"):
        word = word[:-2]
    elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        word = word[:-1]
    if len(word) > 3 and word.endswith("e"):
        word = word[:-1]
    return word


def bm25_scores(
    query: Sequence[str],
    documents: Sequence[Sequence[str]],
    *,
    k1: float = 1.2,
    b: float = 0.75,
) -> list[float]:
    """Okapi BM25 of each document (a list of terms) for ``query``; zero when no term is shared.

    The sentences of the request are the whole collection, so a word found in every sentence
    counts for little and a rare one for much.
    """
    wanted = set(query)
    if not wanted or not documents:
        return [0.0] * len(documents)
    counts = [Counter(term for term in document if term in wanted) for document in documents]
    average_length = sum(len(document) for document in documents) / len(documents) or 1.0
    found_in = Counter(term for count in counts for term in count)
    total = len(documents)
    idf = {
        term: math.log(1.0 + (total - found + 0.5) / (found + 0.5))
        for term, found in found_in.items()
    }
    scores: list[float] = []
    for count, document in zip(counts, documents, strict=True):
        norm = k1 * (1.0 - b + b * len(document) / average_length)
        scores.append(sum(idf[term] * tf * (k1 + 1.0) / (tf + norm) for term, tf in count.items()))
    return scores


@dataclass(frozen=True, slots=True)
class Relevance:
    """How each sentence relates to a question.

    ``scores``: 0 for not at all, 1 for the best of the request (relative: for ranking).
    ``similarity``: the cosine similarity of each sentence to the question (absolute: for
    deciding whether any sentence answers at all); ``None`` without an embedder.
    """

    scores: list[float]
    similarity: list[float] | None
    tokens: int = 0  # word pieces the embedder counted (0 without one)


async def relevance(
    question: str,
    sentences: Sequence[str],
    embedder: EmbeddingModel | None = None,
    *,
    sources: Sequence[int] | None = None,
    ranking: Ranking = RANKING,
) -> Relevance:
    """How relevant each sentence is to ``question`` (see ``Relevance``).

    Without ``embedder``, BM25. With it, cosine similarity, plus the context terms weighted by
    ``ranking`` (``NEIGHBOUR_WEIGHT`` and ``SOURCE_WEIGHT`` by default), where ``sources``
    gives the source of each sentence (consecutive sentences of one source are neighbours;
    without it, all sentences are one source); ``ranking.blend``: the blend of
    ``blended_relevance`` instead. If the embedder fails, ranking falls back to words alone
    rather than failing the request.
    """
    if ranking.blend and embedder is not None:
        return await blended_relevance(question, sentences, embedder)
    lexical = _scaled(bm25_scores(terms(question), [terms(sentence) for sentence in sentences]))
    if embedder is None or not sentences:
        return Relevance(lexical, None)
    found = await _similarity(embedder, question, sentences, lexical)
    if found is None:
        return Relevance(lexical, None)
    cosine, tokens = found
    groups = list(sources) if sources is not None else [0] * len(sentences)
    if len(groups) != len(sentences):
        raise ValueError("sources must give one source per sentence")
    context = _in_context(cosine, groups, ranking)
    return Relevance(_scaled([max(0.0, value) for value in context]), cosine, tokens)


async def blended_relevance(
    query: str, documents: Sequence[str], embedder: EmbeddingModel
) -> Relevance:
    """Independent documents ranked for ``query``: BM25 blended with cosine similarity (see
    ``RERANK_SEMANTIC_WEIGHT``); BM25 alone if the embedder fails."""
    lexical = _scaled(bm25_scores(terms(query), [terms(document) for document in documents]))
    found = await _similarity(embedder, query, documents, lexical) if documents else None
    if found is None:
        return Relevance(lexical, None)
    cosine, tokens = found
    semantic = _scaled([max(0.0, value - RERANK_MIN_SIMILARITY) for value in cosine])
    blended = [
        RERANK_SEMANTIC_WEIGHT * meaning + (1.0 - RERANK_SEMANTIC_WEIGHT) * words
        for meaning, words in zip(semantic, lexical, strict=True)
    ]
    return Relevance(blended, cosine, tokens)


def _in_context(cosine: list[float], groups: list[int], ranking: Ranking) -> list[float]:
    """Each sentence's similarity with its neighbours' and its source's (see the weights)."""
    members: dict[int, list[int]] = {}
    for i, group in enumerate(groups):
        members.setdefault(group, []).append(i)
    ranked = list(cosine)
    for indices in members.values():
        best = sorted((cosine[i] for i in indices), reverse=True)[:3]
        topical = sum(best) / len(best)
        for at, i in enumerate(indices):
            beside = [cosine[indices[j]] for j in (at - 1, at + 1) if 0 <= j < len(indices)]
            ranked[i] += (
                ranking.neighbour_weight * max(beside, default=0.0)
                + ranking.source_weight * topical
            )
    return ranked


async def _similarity(
    embedder: EmbeddingModel,
    question: str,
    sentences: Sequence[str],
    lexical: list[float],
) -> tuple[list[float], int] | None:
    """Cosine similarity of each sentence to the question (0 for those not embedded), and the
    tokens embedded."""
    indices = sorted(range(len(sentences)), key=lambda i: -lexical[i])
    indices = indices[:MAX_EMBEDDED_SENTENCES]
    try:
        embedded = await embedder.embed([question, *(sentences[i] for i in indices)])
        vectors = np.asarray(embedded.vectors, dtype=np.float64)
        if vectors.ndim != 2 or vectors.shape[0] != len(indices) + 1:
            raise ValueError(f"expected {len(indices) + 1} vectors of one size")
    except (PropylonError, ValueError) as error:
        logger.warning("embedder failed, ranking sentences by words only: %s", error)
        return None
    norms = np.linalg.norm(vectors, axis=1)
    norms[norms == 0.0] = 1.0
    cosine = (vectors[1:] @ vectors[0]) / (norms[1:] * norms[0])
    similarity = [0.0] * len(sentences)
    for i, value in zip(indices, cosine.tolist(), strict=True):
        similarity[i] = float(value)
    return similarity, embedded.prompt_tokens or 0


def _scaled(scores: list[float]) -> list[float]:
    best = max(scores, default=0.0)
    return [score / best for score in scores] if best > 0.0 else scores
