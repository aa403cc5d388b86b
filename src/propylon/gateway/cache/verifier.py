"""The second check on a semantic candidate: is it the same question, with the same answer?

A near neighbour by cosine is only a candidate. ``Verifier`` reads both questions
(``pair_features.py``). A difference that changes the answer whatever the wording (another
number, numbers or roles swapped, a negation, an antonym, another name, words added to one
side only) refuses the candidate outright; otherwise a logistic model fitted on labelled
pairs turns the cosine, the shared words and word order and the lengths into the probability
that the cached answer is right for the new question. Below ``min_probability`` the candidate
is refused, and the reason names the veto, or the feature that pulled hardest against it.

The weights are a small JSON asset (``weights/judge.json``) rebuilt by
``propylon eval cache --fit weights/judge.json``; their ``min_probability`` was chosen on the
dev split of the fitting sources, and docs/benchmarks.md ("Semantic cache precision")
reports the error on pair sources the model never saw.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import orjson
from numpy.typing import NDArray

from propylon.gateway.cache.pair_features import NAMES, Text, Words, features, number_veto, veto

READ_CACHE = 4096  # texts whose readings (``Words``, ``Text``) a verifier keeps


@dataclass(frozen=True, slots=True)
class JudgeWeights:
    """A fitted logistic model over ``pair_features.NAMES`` (standardised inputs)."""

    mean: NDArray[np.float64]
    scale: NDArray[np.float64]
    coef: NDArray[np.float64]
    bias: float
    min_probability: float

    def logit(self, x: NDArray[np.float64]) -> NDArray[np.float64]:
        return ((x - self.mean) / self.scale) @ self.coef + self.bias

    def to_json(self, **extra: object) -> bytes:
        return orjson.dumps(
            {
                "features": list(NAMES),
                "mean": self.mean.round(6).tolist(),
                "scale": self.scale.round(6).tolist(),
                "coef": self.coef.round(6).tolist(),
                "bias": round(self.bias, 6),
                "min_probability": round(self.min_probability, 4),
                **extra,
            },
            option=orjson.OPT_INDENT_2,
        )

    @classmethod
    def from_json(cls, data: bytes) -> JudgeWeights:
        raw = orjson.loads(data)
        if list(raw["features"]) != list(NAMES):
            raise ValueError("judge weights were fitted on other features; rebuild them")
        return cls(
            np.asarray(raw["mean"], dtype=np.float64),
            np.asarray(raw["scale"], dtype=np.float64),
            np.asarray(raw["coef"], dtype=np.float64),
            float(raw["bias"]),
            float(raw["min_probability"]),
        )

    @classmethod
    def load(cls, path: Path | None = None) -> JudgeWeights:
        """The shipped weights, or those at ``path``."""
        if path is None:
            data = resources.files("propylon.gateway.cache").joinpath("weights/judge.json")
            return cls.from_json(data.read_bytes())
        return cls.from_json(path.read_bytes())


@dataclass(frozen=True, slots=True)
class Verdict:
    """The judge on one (question, candidate) pair: the probability that the candidate's
    answer is right for the question (0 when a veto fired), and what weighed most against it
    (the veto, else the feature that pulled the probability down hardest)."""

    probability: float
    reason: str
    vetoed: bool = False

    def refusal(self, min_probability: float) -> str | None:
        """None when the candidate may be served at this threshold, else why not."""
        if self.vetoed or self.probability < min_probability:
            return self.reason
        return None


class Verifier:
    """The judge of "same question, same answer". ``verdict(question, candidate, similarity)``
    rates a candidate; ``refusal`` applies the global threshold (``min_probability``). A
    caller with its own threshold (a tightened cache entry) applies it to the verdict."""

    def __init__(self, weights: JudgeWeights, *, min_probability: float | None = None) -> None:
        self.weights = weights
        self.min_probability = (
            weights.min_probability if min_probability is None else min_probability
        )
        # A lookup judges up to four candidates against one question, and popular entries
        # come back as candidates again and again: each text is read once, in two steps.
        # Most near candidates in templated traffic differ by a number: the words decide
        # them, and the rest of the reading is made only for a pair that passes.
        words = self._words = functools.lru_cache(maxsize=READ_CACHE)(Words.of)
        self._texts = functools.lru_cache(maxsize=READ_CACHE)(
            lambda text: Text.of_words(words(text))
        )

    def verdict(self, question: str, candidate: str, similarity: float) -> Verdict:
        vetoed = number_veto(self._words(question).numbers, self._words(candidate).numbers)
        if vetoed is not None:
            return Verdict(0.0, vetoed, vetoed=True)
        a, b = self._texts(question), self._texts(candidate)
        vetoed = veto(a, b)  # before the vector: most near candidates stop here
        if vetoed is not None:
            return Verdict(0.0, vetoed, vetoed=True)
        x = features(a, b, similarity)
        probability = float(1 / (1 + np.exp(-self.weights.logit(x))))
        pull = (x - self.weights.mean) / self.weights.scale * self.weights.coef
        return Verdict(probability, NAMES[int(np.argmin(pull))])

    def probability(self, question: str, candidate: str, similarity: float) -> float:
        """The model's probability of "same answer" (0 when a veto fires)."""
        return self.verdict(question, candidate, similarity).probability

    def refusal(self, question: str, candidate: str, similarity: float) -> str | None:
        return self.verdict(question, candidate, similarity).refusal(self.min_probability)
