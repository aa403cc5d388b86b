"""Checks on what the model says before the client sees it: leaked secrets and the canary.

``OutputScanner.check(text)`` looks at a whole answer; ``OutputScanner.stream()`` returns a
``StreamCheck`` that is fed each streamed delta and only re-reads a short tail plus the new
text, so the cost stays linear in the answer's length. A finding names what leaked but never
carries the secret itself (it ends up in logs and error messages).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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


@dataclass(frozen=True, slots=True)
class Finding:
    """What an output check found: ``canary`` or the name of a secret pattern."""

    kind: str

    @property
    def code(self) -> str:
        return "canary_leaked" if self.kind == "canary" else "secret_leaked"


class OutputScanner:
    """Finds the canary and credential-shaped strings in model output."""

    def __init__(self, *, canary: str | None, secrets: bool) -> None:
        self._canary = canary or None
        self._patterns = SECRET_PATTERNS if secrets else {}

    @property
    def active(self) -> bool:
        return self._canary is not None or bool(self._patterns)

    def check(self, text: str) -> Finding | None:
        """The first thing in ``text`` that must not reach the client, if any."""
        if self._canary is not None and self._canary in text:
            return Finding("canary")
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
        self._keep = max(_TAIL, 2 * len(scanner._canary or ""))

    def feed(self, delta: str) -> Finding | None:
        """Add the next piece of the answer; a finding means: stop the stream now."""
        if not delta:
            return None
        window = self._tail + delta
        finding = self._scanner.check(window)
        self._tail = window[-self._keep :]
        return finding
