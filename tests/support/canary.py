"""What an upstream received, with the guard's per-request canary taken off again.

Every system prompt reaching a provider carries a fresh canary line (``guard/canary.py``);
tests that check the rest of the prompt went through unchanged compare it without."""

from __future__ import annotations

from propylon.guard.canary import strip_canaries


def without_canary(text: str) -> str:
    """``text`` with the canary line removed; asserts there was one."""
    stripped = strip_canaries(text)
    assert stripped != text and "PYL-" in text, f"expected a canary line in {text!r}"
    return stripped
