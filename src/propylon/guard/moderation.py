"""``POST /v1/moderations`` answered by the guard, in OpenAI's moderation shape.

The categories are what the guard actually detects, never OpenAI's content categories:
``prompt_injection`` (the detector's verdict on the text as user input: flagged when its
label is ``injection``, scored with its combined score) and one category per heuristic
family (``instruction_override``, ``role_play``, ``prompt_extraction``, ``encoded_payload``,
``hidden_unicode``), scored 1 − Π(1 − weight) over the rules of that family that fired.
"""

from __future__ import annotations

import secrets
from typing import Any

from propylon.errors import InvalidRequest
from propylon.guard import heuristics
from propylon.guard.detector import InjectionDetector

MODEL = "propylon-guard"
CATEGORIES = ("prompt_injection", *heuristics.FAMILIES)
_MAX_INPUTS = 256


class Moderator:
    """Moderation results for texts, one per input, from the injection detector."""

    def __init__(self, detector: InjectionDetector) -> None:
        self._detector = detector

    async def moderate(self, body: dict[str, Any]) -> dict[str, Any]:
        texts = _inputs(body.get("input"))
        verdicts = await self._detector.scan_many(texts, "user")
        results = []
        for text, verdict in zip(texts, verdicts, strict=True):
            by_family: dict[str, list[heuristics.Signal]] = {}
            for signal in heuristics.scan(text):
                by_family.setdefault(signal.family, []).append(signal)
            scores = {"prompt_injection": round(verdict.score, 4)}
            flags = {"prompt_injection": verdict.is_injection}
            for family in heuristics.FAMILIES:
                fired = by_family.get(family, [])
                scores[family] = round(heuristics.heuristic_score(fired), 4)
                flags[family] = bool(fired)
            results.append(
                {
                    "flagged": verdict.is_injection,
                    "categories": flags,
                    "category_scores": scores,
                    "category_applied_input_types": {name: ["text"] for name in CATEGORIES},
                }
            )
        return {"id": f"modr-{secrets.token_hex(12)}", "model": MODEL, "results": results}


def _inputs(value: object) -> list[str]:
    """``input`` as texts: a string, an array of strings (one result each), or an array of
    text parts (one input, as OpenAI's API reads it: one result for all its parts)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and len(value) <= _MAX_INPUTS:
        if all(isinstance(item, str) for item in value):
            return list(value)
        texts: list[str] = []
        for index, item in enumerate(value):
            if isinstance(item, dict) and item.get("type") == "text":
                text = item.get("text")
                if not isinstance(text, str):
                    raise InvalidRequest(f"`input[{index}].text` must be a string.", param="input")
                texts.append(text)
            else:
                raise InvalidRequest(
                    f"`input[{index}]` must be a text part, as the others are (strings and "
                    "parts do not mix; images are not moderated by the guard).",
                    param="input",
                )
        return ["\n".join(texts)]
    raise InvalidRequest(
        f"`input` must be a string or an array of 1 to {_MAX_INPUTS} strings.", param="input"
    )
