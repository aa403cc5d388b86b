"""The second check on a semantic candidate: cheap lexical tests for the differences
sentence embeddings are known to blur.

A question and its negation, two dates, two percentages or "higher" against "lower" often
score above 0.9 cosine. The candidate is refused when the two questions disagree on:

* numbers (digits, with their decimals and units glued on: ``4.14``, ``0.28%``, ``2013``);
* negation (``not``, ``never``, ``n't``, ``without``…: present in one, absent in the other);
* direction: one says ``higher`` (``before``, ``up``…) where the other says its opposite;
* calendar names (weekdays, months, as capitalised words).

Measured in docs/benchmarks.md ("Semantic cache precision").
"""

from __future__ import annotations

import re

_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?|\d+(?:[.,:/]\d+)*%?")
_NUMBER = re.compile(r"\d")
_NEGATIONS = frozenset(
    {
        "not",
        "never",
        "none",
        "nobody",
        "nothing",
        "neither",
        "nor",
        "cannot",
        "isnt",
        "dont",
        "doesnt",
        "didnt",
        "wont",
        "cant",
    }
)
_OPPOSITES = (
    ("higher", "lower"),
    ("up", "down"),
    ("rise", "fall"),
    ("rises", "falls"),
    ("rose", "fell"),
    ("east", "west"),
    ("north", "south"),
    ("acquitted", "convicted"),
    ("continues", "lifts"),
    ("gone", "back"),
    ("gain", "loss"),
    ("increase", "decrease"),
    ("more", "less"),
    ("most", "least"),
    ("before", "after"),
    ("above", "below"),
    ("max", "min"),
    ("maximum", "minimum"),
    ("first", "last"),
    ("best", "worst"),
    ("buy", "sell"),
    ("open", "close"),
    ("opens", "closes"),
    ("win", "lose"),
    ("enable", "disable"),
    ("allow", "deny"),
    ("true", "false"),
    ("add", "remove"),
    ("import", "export"),
    ("input", "output"),
    ("largest", "smallest"),
    ("fastest", "slowest"),
)
_CALENDAR = re.compile(
    r"\b(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday|January|February|March|"
    r"April|May|June|July|August|September|October|November|December|"
    r"Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)\b"
)


class Verifier:
    """``refusal(question, candidate)``: None when the candidate may be served, else why not."""

    def refusal(self, question: str, candidate: str) -> str | None:
        a, b = _words(question), _words(candidate)
        if _numbers(a) != _numbers(b):
            return "numbers"
        if _negated(a) != _negated(b):
            return "negation"
        if _opposed(a, b):
            return "direction"
        if set(_CALENDAR.findall(question)) != set(_CALENDAR.findall(candidate)):
            return "calendar"
        return None


def _words(text: str) -> set[str]:
    return set(_tokens(text))


def _tokens(text: str) -> list[str]:
    lowered = text.lower().replace("’", "'")
    out: list[str] = []
    for word in _WORD.findall(lowered):
        if word.endswith("n't"):
            out += [word[:-3], "not"]
        else:
            out.append(word.replace("'", ""))
    return out


def _numbers(words: set[str]) -> set[str]:
    return {w.replace(",", "") for w in words if _NUMBER.search(w)}


def _opposed(a: set[str], b: set[str]) -> bool:
    """One says x where the other says its opposite (and neither says both)."""
    for x, y in _OPPOSITES:
        if (x in a and y in b and y not in a and x not in b) or (
            y in a and x in b and x not in a and y not in b
        ):
            return True
    return False


def _negated(words: set[str]) -> bool:
    return bool(words & _NEGATIONS)
