"""Secrets taken out of prompts and responses before they are stored in the request log."""

from __future__ import annotations

import re

REDACTED = "[REDACTED]"

# (a literal every match contains, the pattern). The literal is looked for first (a fast
# substring search), so text without it costs no regex scan: most text has none of them.
# Each pattern matches the secret itself, not the words around it.
_SECRETS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (trigger, re.compile(pattern))
    for trigger, pattern in (
        (
            "PRIVATE KEY-----",
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----",
        ),
        ("sk-", r"\bsk-(?:ant-|proj-)?[A-Za-z0-9_\-]{16,}"),  # OpenAI, Anthropic
        ("pk-", r"\bpk-[A-Za-z0-9_\-]{16,}"),
        ("ppl_", r"\bppl_[A-Za-z0-9_\-]{16,}"),  # Propylon's own keys
        ("propylon-ticket.", r"(?<=propylon-ticket\.)[A-Za-z0-9_\-]+"),  # WebSocket tickets
        ("_", r"\bgh[pousr]_[A-Za-z0-9]{30,}"),  # GitHub
        ("xox", r"\bxox[abprs]-[A-Za-z0-9\-]{10,}"),  # Slack
        ("AKIA", r"\bAKIA[0-9A-Z]{16}\b"),  # AWS access key id
        ("AIza", r"\bAIza[0-9A-Za-z_\-]{35}"),  # Google API key
        ("eyJ", r"\beyJ[A-Za-z0-9_\-]{8,}\.eyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}"),  # JWT
    )
)
_BEARER = re.compile(r"\b(?i:bearer)\s+[A-Za-z0-9._~+/\-]{16,}=*")
_ASSIGNED_WORDS = ("key", "secret", "passw", "token")
# `password = value`, `"api_key": "value"`: the value alone is replaced.
_ASSIGNED = re.compile(
    r"(?i)\b((?:api[_-]?key|secret|password|passwd|token|access[_-]?key)\"?\s*[:=]\s*\"?)"
    r"([^\s\"',;]{6,})"
)


def redact(text: str) -> str:
    """``text`` with API keys, tokens, private keys and ``password=…`` values replaced."""
    for trigger, pattern in _SECRETS:
        if trigger in text:
            text = pattern.sub(REDACTED, text)
    lowered = text.lower()
    if "bearer" in lowered:
        text = _BEARER.sub(REDACTED, text)
    if any(word in lowered for word in _ASSIGNED_WORDS):
        text = _ASSIGNED.sub(lambda m: m.group(1) + REDACTED, text)
    return text
