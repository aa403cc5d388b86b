"""What one ``chat.completion.chunk`` carries, read once for the stream translators.

The Responses and Messages APIs tell the chat path's chunks as their own events
(``responses.events``, ``providers.anthropic_translation.streams``); both read a chunk the
same way, here: the first choice's text and tool-call deltas, its finish reason, the usage.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from propylon.gateway.protocol import JSONObject, native_answer


@dataclass(frozen=True, slots=True)
class ChunkParts:
    text: str = ""
    tool_calls: list[JSONObject] = field(default_factory=list)
    finish: str | None = None
    usage: JSONObject | None = None
    model: object = None


def chunk_parts(chunk: JSONObject) -> ChunkParts:
    """The parts of ``chunk``; shapes that do not fit count as absent, never raise."""
    usage = chunk.get("usage") if isinstance(chunk.get("usage"), dict) else None
    choices = chunk.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else None
    if not isinstance(choice, dict):
        return ChunkParts(usage=usage, model=chunk.get("model"))
    finish = choice.get("finish_reason")
    delta = choice.get("delta")
    delta = delta if isinstance(delta, dict) else {}
    text = delta.get("content")
    calls = delta.get("tool_calls")
    return ChunkParts(
        text=text if isinstance(text, str) else "",
        tool_calls=[call for call in calls if isinstance(call, dict)]
        if isinstance(calls, list)
        else [],
        finish=finish if isinstance(finish, str) else None,
        usage=usage,
        model=chunk.get("model"),
    )


async def native_events(
    first: JSONObject, rest: AsyncIterator[JSONObject]
) -> AsyncIterator[JSONObject]:
    """The upstream events a passthrough stream's chunks carry (``first``, then ``rest``),
    in order, for the Messages and Responses endpoints to relay."""
    chunk: JSONObject | None = first
    while chunk is not None:
        event = native_answer(chunk)
        if event is not None:
            yield event
        chunk = await anext(rest, None)
