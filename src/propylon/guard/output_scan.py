"""Checks on what the model says before the client sees it: leaked secrets, the canaries and
the system prompt itself.

``OutputScanner.check(text)`` looks at a whole answer; ``OutputScanner.stream()`` returns a
``StreamCheck`` that is fed each streamed delta and only re-reads a short tail plus the new
text, so the cost stays linear in the answer's length. A finding names what leaked but never
carries the secret itself (it ends up in logs and error messages).

The system-prompt check (``PromptOverlap``) looks for any run of ``words`` consecutive words
of the system prompt, compared case- and punctuation-blind, in the answer: a model talked into
reciting its instructions quotes them, and twelve words in the same order do not recur by
chance. It does not see a paraphrased or translated leak; the canary catches the copies that
include its line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import islice

# Well-known credential shapes. Narrow on purpose: a false positive here kills an answer.
SECRET_PATTERNS: dict[str, re.Pattern[str]] = {
    "openai_key": re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"),
    "anthropic_key": re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    "aws_access_key": re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b"),
    "github_token": re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})"),
    "slack_token": re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"),
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}"),
    "stripe_key": re.compile(r"\b[sr]k_live_[0-9A-Za-z]{20,}"),
    "private_key": re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----"),
}
# Every match of a pattern above holds one of these literals. One search for them passes most
# answers (none holds any) in 1-2 µs, where the eight patterns cost ~30 µs on a short answer.
_LITERALS = re.compile(r"sk-|[sr]k_live_|AKIA|ASIA|gh[pousr]_|github_pat_|xox|AIza|-----BEGIN ")
# Longest text a pattern needs to see at once; the streaming check keeps this much history.
_TAIL = 256
_WORD = re.compile(r"\w+")


@dataclass(frozen=True, slots=True)
class Finding:
    """What an output check found: ``canary``, ``system_prompt`` or a secret pattern's name."""

    kind: str

    @property
    def code(self) -> str:
        if self.kind in ("canary", "system_prompt"):
            return f"{self.kind}_leaked"
        return "secret_leaked"


class PromptOverlap:
    """Finds runs of ``words`` consecutive words of a system prompt in a text."""

    def __init__(self, system_prompt: str, words: int) -> None:
        tokens = _WORD.findall(system_prompt.lower())
        self.words = words
        self._runs = {" ".join(tokens[i : i + words]) for i in range(len(tokens) - words + 1)}
        longest = max((len(run) for run in self._runs), default=0)
        self.span = 2 * longest  # characters an answer may spend on one run, separators aside

    def __bool__(self) -> bool:
        return bool(self._runs)

    def found(self, text: str) -> bool:
        tokens = _WORD.findall(text.lower())
        n = self.words
        return any(
            " ".join(islice(tokens, i, i + n)) in self._runs for i in range(len(tokens) - n + 1)
        )


class OutputScanner:
    """Finds canaries, runs of the system prompt and credential-shaped strings in model
    output. Built per request (the canary and the system prompt are the request's)."""

    def __init__(
        self,
        *,
        canaries: tuple[str, ...] = (),
        secrets: bool,
        overlap: PromptOverlap | None = None,
    ) -> None:
        self._canaries = tuple(c for c in canaries if c)
        self._patterns = SECRET_PATTERNS if secrets else {}
        self._overlap = overlap if overlap else None

    @property
    def active(self) -> bool:
        return bool(self._canaries) or bool(self._patterns) or self._overlap is not None

    def check(self, text: str) -> Finding | None:
        """The first thing in ``text`` that must not reach the client, if any."""
        if any(c in text for c in self._canaries):
            return Finding("canary")
        if self._overlap is not None and self._overlap.found(text):
            return Finding("system_prompt")
        if not self._patterns or not _LITERALS.search(text):
            return None
        for name, pattern in self._patterns.items():
            if pattern.search(text):
                return Finding(name)
        return None

    def stream(self) -> StreamCheck:
        return StreamCheck(self)


class StreamCheck:
    """Scans a streamed answer as it accumulates."""

    def __init__(self, scanner: OutputScanner) -> None:
        self._scanner = scanner
        self._tail = ""
        canary = max((len(c) for c in scanner._canaries), default=0)
        overlap = scanner._overlap.span if scanner._overlap is not None else 0
        self._keep = max(_TAIL, 2 * canary, overlap)

    def feed(self, delta: str) -> Finding | None:
        """Add the next piece of the answer; a finding means: stop the stream now."""
        if not delta:
            return None
        window = self._tail + delta
        finding = self._scanner.check(window)
        self._tail = window[-self._keep :]
        return finding
