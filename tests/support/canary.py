"""What an upstream received, with the guard's per-request canary taken off again.

Every system prompt reaching a provider carries a fresh canary line (``guard/canary.py``);
tests that check the rest of the prompt went through unchanged compare it without."""

from __future__ import annotations

import re

_LINE = re.compile(r"\n\n\[Confidential marker PYL-[0-9a-f]{16}\. [^\]]*\]")


def without_canary(text: str) -> str:
    """``text`` with the canary line removed; asserts there was exactly one."""
    stripped, count = _LINE.subn("", text)
    assert count == 1, f"expected one canary line in {text!r}"
    return stripped
