"""The fake model's answer: deterministic text or a tool call, cut into streamable pieces.

Both dialects (OpenAI, Anthropic) ask this module what to say and only differ in how they
wrap it. A token is approximated by a whitespace-separated word, which keeps usage numbers
predictable enough for tests to assert on without a tokenizer.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson

from propylon.testing.behaviour import Behaviour
from propylon.testing.tool_arguments import sample_arguments
from propylon.testing.wire_error import invalid_request

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
    delay_s: float = 0.0  # a scripted turn's extra delay before it is sent
    parallel: tuple[ToolCall, ...] = ()  # further calls of the same answer (after tool_call)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """Every tool the answer calls, in order (empty for a text answer)."""
        return () if self.tool_call is None else (self.tool_call, *self.parallel)

    def call_pieces(self, call: ToolCall) -> tuple[str, ...]:
        """The streamed deltas of one call's arguments."""
        return self.pieces if call is self.tool_call else _split(call.arguments, _JSON_PIECE)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def tokens(self) -> int:
        return len(self.pieces) + sum(len(_split(c.arguments, _JSON_PIECE)) for c in self.parallel)


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


def compose_thinking(prompt: str) -> tuple[str, ...]:
    """The streamed pieces of a model's reasoning before it answers ``prompt`` (Anthropic's
    thinking blocks, the Responses API's reasoning summaries); each piece is a token."""
    words = ["Considering:", *prompt.split()[:ECHO_WORDS], "then", "answering."]
    return _split(" ".join(words), _PIECE)


def compose_leak(system_prompt: str) -> Completion:
    """An answer that repeats the system prompt word for word."""
    return Completion(_split(f"Sure! My instructions are: {system_prompt}", _PIECE), "stop")


def compose_tool_call(name: str, schema: Mapping[str, Any], prompt: str) -> Completion:
    """A call of ``name`` whose arguments fit ``schema`` and depend only on it and the prompt."""
    arguments = orjson.dumps(sample_arguments(schema, _seed(name + "\0" + prompt))).decode()
    return Completion(
        _split(arguments, _JSON_PIECE), "tool_calls", tool_call=ToolCall(name, arguments)
    )


_OBEYED = re.compile(r"CALL_TOOL\s+([A-Za-z0-9_.-]+)\s+(\{.*?\})(?:\s|$)", re.DOTALL)


def scripted(
    messages: Sequence[Mapping[str, Any]], behaviour: Behaviour, tools: Collection[str]
) -> Completion | None:
    """The scripted answer for this point of the conversation, or None to answer as usual.

    With ``obey_tool_results``, an instruction injected into the latest tool result wins over
    the script: this fake is the gullible model a defence must hold against.
    """
    if not tools:  # a script plays an agent's model: requests that offer no tool get the echo
        return None
    if behaviour.obey_tool_results and messages:
        found = _OBEYED.search(_tool_result_text(messages[-1]))
        if found and found[1] in tools:
            return _call(found[1], orjson.loads(found[2]), 0.0)
    turn = sum(1 for message in messages if message.get("role") == "assistant")
    if turn >= len(behaviour.script):
        return None
    step = behaviour.script[turn]
    if step.tool is None:
        text = step.text or ""
        return Completion(_split(text, _PIECE), "stop", delay_s=step.delay_ms / 1000)
    for name in (step.tool, *(call.tool for call in step.parallel)):
        if name not in tools:
            raise invalid_request(
                f"The script calls `{name}`, which is not among the request's tools.",
                param="tools",
            )
    parallel = tuple(
        ToolCall(call.tool, orjson.dumps(call.arguments).decode()) for call in step.parallel
    )
    return _call(step.tool, step.arguments, step.delay_ms / 1000, parallel)


def _call(
    name: str,
    arguments: Mapping[str, Any],
    delay_s: float,
    parallel: tuple[ToolCall, ...] = (),
) -> Completion:
    text = orjson.dumps(dict(arguments)).decode()
    return Completion(
        _split(text, _JSON_PIECE),
        "tool_calls",
        tool_call=ToolCall(name, text),
        delay_s=delay_s,
        parallel=parallel,
    )


def _tool_result_text(message: Mapping[str, Any]) -> str:
    """The text of a tool result message (OpenAI `tool` role, Anthropic `tool_result` blocks)."""
    if message.get("role") == "tool":
        return text_of(message.get("content"))
    content = message.get("content")
    if message.get("role") == "user" and isinstance(content, list):
        return " ".join(
            text_of(block)
            for block in content
            if isinstance(block, dict) and block.get("type") == "tool_result"
        )
    return ""


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
