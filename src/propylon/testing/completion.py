"""The fake model's answer: deterministic text or a tool call, cut into streamable pieces.

Both dialects (OpenAI, Anthropic) ask this module what to say and only differ in how they
wrap it. A token is approximated by a whitespace-separated word, which keeps usage numbers
predictable enough for tests to assert on without a tokenizer.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from propylon.testing.tool_arguments import sample_arguments

Finish = Literal["stop", "length", "stop_sequence", "tool_calls"]
"""Why an answer ended, in neutral words each dialect maps to its own."""

ECHO_WORDS = 8
"""How many words of the last user message open the answer, after ``Echo:``."""

_PADDING = (
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel",
    "india", "juliet", "kilo", "lima", "mike", "november", "oscar", "papa",
    "quebec", "romeo", "sierra", "tango", "uniform", "victor", "whiskey", "xray",
    "yankee", "zulu", "amber", "basalt", "cedar", "dune", "ember", "fjord",
)  # fmt: skip

_PIECE = re.compile(r"\s*\S+|\s+")
_JSON_PIECE = re.compile(r"\w+|\W+")


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function the model decided to call, with arguments as JSON text."""

    name: str
    arguments: str

    @property
    def input(self) -> dict[str, Any]:
        """The arguments as an object, the way Anthropic's ``tool_use`` block carries them."""
        parsed: dict[str, Any] = orjson.loads(self.arguments)
        return parsed


@dataclass(frozen=True, slots=True)
class Completion:
    """What the model answers; ``pieces`` are the streamed deltas and count as its tokens."""

    pieces: tuple[str, ...]
    finish: Finish
    stop_sequence: str | None = None
    tool_call: ToolCall | None = None

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def tokens(self) -> int:
        return len(self.pieces)


def compose_text(
    prompt: str, target_tokens: int, max_tokens: int | None, stop: Sequence[str] = ()
) -> Completion:
    """``Echo: <first words of prompt>`` padded with words seeded by the prompt.

    The answer has ``target_tokens`` words, or ``max_tokens`` when fewer (finish
    ``length``); a stop sequence found in it cuts it just before (finish ``stop_sequence``).
    """
    rng = random.Random(_seed(prompt))
    words = ["Echo:", *prompt.split()[:ECHO_WORDS]]
    while len(words) < target_tokens:
        words.append(rng.choice(_PADDING))
    length = target_tokens if max_tokens is None else min(target_tokens, max_tokens)
    text = " ".join(words[:length])
    finish: Finish = "length" if length < target_tokens else "stop"
    hit = _first_stop(text, stop)
    if hit is not None:
        text = text[: text.index(hit)]
        return Completion(_split(text, _PIECE), "stop_sequence", stop_sequence=hit)
    return Completion(_split(text, _PIECE), finish)


def compose_leak(system_prompt: str) -> Completion:
    """An answer that repeats the system prompt word for word."""
    return Completion(_split(f"Sure! My instructions are: {system_prompt}", _PIECE), "stop")


def compose_tool_call(name: str, schema: Mapping[str, Any], prompt: str) -> Completion:
    """A call of ``name`` whose arguments fit ``schema`` and depend only on it and the prompt."""
    arguments = orjson.dumps(sample_arguments(schema, _seed(name + "\0" + prompt))).decode()
    return Completion(
        _split(arguments, _JSON_PIECE), "tool_calls", tool_call=ToolCall(name, arguments)
    )


def text_of(content: object) -> str:
    """The plain text of a message's content, whichever dialect shaped it.

    Accepts a string, a list of parts or blocks (``text``, and ``tool_result`` whose
    ``content`` nests again); images and other parts contribute nothing.
    """
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(text for part in content if (text := text_of(part)))
    if isinstance(content, dict):
        if isinstance(content.get("text"), str):
            return str(content["text"])
        return text_of(content.get("content"))
    return ""


def count_tokens(*texts: str) -> int:
    """Approximate tokens as words, so usage is easy to predict in a test."""
    return sum(len(text.split()) for text in texts)


def _first_stop(text: str, stop: Sequence[str]) -> str | None:
    found = [(text.index(s), s) for s in stop if s and s in text]
    return min(found)[1] if found else None


def _split(text: str, pattern: re.Pattern[str]) -> tuple[str, ...]:
    return tuple(pattern.findall(text))


def _seed(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")
