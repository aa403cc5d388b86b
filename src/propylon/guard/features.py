"""What the classifier sees besides the MiniLM embedding, and how long text is cut into windows.

The lexical part is small and fixed-size: the heuristics' per-family confidences, a few
shape statistics, and hashed word unigrams and bigrams (``HASH_BUCKETS`` buckets, crc32, so
the same text always lands in the same buckets on every machine). Changing anything here
changes the meaning of the shipped weights: bump ``FEATURE_VERSION`` and retrain.
"""

from __future__ import annotations

import itertools
import math
import re
import zlib

import numpy as np
from numpy.typing import NDArray

from propylon.guard.decoding import payloads
from propylon.guard.heuristics import FAMILIES, Signal, heuristic_score

FEATURE_VERSION = 1
HASH_BUCKETS = 1024
STATS = 8
CHAR_BUCKETS = 1024
LEXICAL_SIZE = len(FAMILIES) + 1 + STATS + HASH_BUCKETS + CHAR_BUCKETS
# Window length per source: retrieved text is read in short pieces so that one injected
# sentence is not drowned by the document around it.
WINDOW_CHARS = {"user": 600, "retrieved": 250}

_WORD = re.compile(r"\w+", re.UNICODE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_SENTENCE_MARK = re.compile(r"[.!?](?:\s|$)")
_YOU = {"you", "your", "yours", "yourself", "du", "dir", "dich", "dein", "deine", "sie", "ihr"}


def windows(
    text: str, max_chars: int = 600, max_windows: int = 16, *, merge: bool = True
) -> list[str]:
    """``text`` cut at line and sentence ends into pieces of at most ``max_chars``.

    MiniLM reads 256 word pieces at most, so a long document is scored window by window
    and an injection hidden in its middle is still seen. Only the first ``max_windows``
    windows are kept (the heuristics still read the whole text).
    """
    text = text.strip()
    if len(text) <= max_chars:
        return [" ".join(text.split())]
    parts: list[str] = []
    for line in text.split("\n"):
        for sentence in _SENTENCE_END.split(line):
            sentence = " ".join(sentence.split())
            while len(sentence) > max_chars:
                cut = sentence.rfind(" ", max_chars // 3, max_chars)
                cut = cut if cut > 0 else max_chars
                parts.append(sentence[:cut].strip())
                sentence = sentence[cut:].strip()
            if sentence:
                parts.append(sentence)
    if not merge:
        return parts[:max_windows]
    out: list[str] = []
    current = ""
    for part in parts:
        if current and len(current) + 1 + len(part) > max_chars:
            out.append(current)
            current = part
        else:
            current = f"{current} {part}" if current else part
    if current:
        out.append(current)
    return out[:max_windows]


def lexical_features(text: str, signals: list[Signal]) -> NDArray[np.float32]:
    """The fixed-size lexical vector of one window."""
    out = np.zeros(LEXICAL_SIZE, dtype=np.float32)
    if signals:  # (none: every family's score is 0, as zeros already say)
        for i, family in enumerate(FAMILIES):
            out[i] = heuristic_score([s for s in signals if s.family == family])
        out[len(FAMILIES)] = heuristic_score(signals)
    words = [w.lower() for w in _WORD.findall(text)]
    n = max(len(words), 1)
    letters = [c for c in text if c.isalpha()]
    stats = out[len(FAMILIES) + 1 : len(FAMILIES) + 1 + STATS]
    stats[0] = math.log1p(len(text)) / 8.0
    stats[1] = sum(map(str.isupper, letters)) / max(len(letters), 1)
    non_ascii = 0 if text.isascii() else sum(1 for c in letters if ord(c) > 127)
    stats[2] = non_ascii / max(len(letters), 1)
    stats[3] = sum(1 for w in words if w in _YOU) / n
    stats[4] = min(text.count("?"), 5) / 5.0
    stats[5] = min(text.count("\n"), 20) / 20.0
    stats[6] = min(len(_SENTENCE_MARK.findall(text)), 10) / 10.0
    stats[7] = min(text.count('"') + text.count("'"), 10) / 10.0
    start = len(FAMILIES) + 1 + STATS
    grams = words + [f"{a} {b}" for a, b in itertools.pairwise(words)]
    _hash_into(out[start : start + HASH_BUCKETS], grams)
    # Character 4-grams: MiniLM knows little German, these catch its word forms.
    flat = " " + " ".join(words) + " "
    _hash_into(out[start + HASH_BUCKETS :], [flat[i : i + 4] for i in range(len(flat) - 3)])
    return out


def _hash_into(target: NDArray[np.float32], grams: list[str]) -> None:
    size, crc32 = len(target), zlib.crc32
    target[[crc32(gram.encode("utf-8")) % size for gram in grams]] = 1.0  # one numpy call
    norm = float(np.linalg.norm(target))
    if norm > 0:
        target /= norm


def units(text: str, source: str, max_windows: int) -> list[str]:
    """The pieces the classifier scores for one text of ``source`` (see ``split_units``)."""
    own, decoded = split_units(text, source, max_windows)
    return own + decoded


def split_units(text: str, source: str, max_windows: int) -> tuple[list[str], list[str]]:
    """The pieces the classifier scores for one text of ``source``: the text's own windows, and
    the windows of what it hides (its score is their max).

    Retrieved text: each line or sentence alone, so one injected sentence is not drowned by
    the document around it. User input: the whole message (in 600-character windows), and
    the decoded text of each encoded payload it holds (``decoding.py``) as a window of its
    own, so an encoded instruction is read for what it says (a text holding none costs
    nothing more).
    """
    if source == "retrieved":
        return windows(text, WINDOW_CHARS["retrieved"], max_windows, merge=False), []
    own = windows(text, WINDOW_CHARS["user"], max_windows)
    decoded = [w for _, p in payloads(text) for w in windows(p, WINDOW_CHARS["user"], 1)]
    return own, [w for w in dict.fromkeys(decoded) if w not in own]
