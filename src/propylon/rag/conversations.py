"""Server-side conversations, and keeping their history inside the model's window.

A ``conversation_id`` (``"new"`` to start one, a UUID an answer returned, or a UUID the
client picks) names a tenant's
conversation: its turns are stored verbatim (``conversation_turns``). Before each answer the
history is planned against its token budget:

* the latest turns stay verbatim — as many as fit, and at least the last ``keep_turns`` while
  they fit at all;
* older turns are compacted: summarised by the answer model (the summary is stored with the
  seq it covers, so each turn is summarised once and later summaries fold in the previous
  one), or — when the answer model is local (the extractive model cannot summarise) —
  truncated to their most recent part behind a marker saying how many turns were cut.

The system prompt is never compacted: it is not part of the history.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from propylon.db.database import Database
from propylon.errors import InvalidRequest, NotFound
from propylon.rag.retrieval_queries import QUERIES
from propylon.storable import escape_unstorable, storable_json

CountTokens = Callable[[str], int]
Summarise = Callable[[str, int], Awaitable[str]]  # (text, max tokens) -> summary
log = logging.getLogger(__name__)

TURN_OVERHEAD = 4  # tokens the chat format adds around one message
TRUNCATION_MARKER = (
    "[Earlier conversation compacted: {n} older turns were cut; the most recent part follows.]"
)
_WORD = re.compile(r"\S+\s*")


@dataclass(frozen=True, slots=True)
class Turn:
    seq: int
    role: str
    content: str


@dataclass(slots=True)
class Conversation:
    id: str
    tenant_id: str
    summary: str | None
    summary_through: int
    summary_kind: str | None
    turns: list[Turn]


@dataclass(frozen=True, slots=True)
class HistoryPlan:
    """What goes into the prompt: ``summary`` (compacted older turns) then ``verbatim``."""

    summary: str | None
    summary_kind: str | None
    summary_through: int
    verbatim: list[Turn]
    compacted_turns: int
    tokens: int

    def messages(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.summary:
            out.append(
                {
                    "role": "system",
                    "content": f"Summary of the earlier conversation:\n{self.summary}",
                }
            )
        out += [{"role": turn.role, "content": turn.content} for turn in self.verbatim]
        return out


NEW_CONVERSATION = "new"


def parse_conversation_id(value: Any) -> str | None:
    """The conversation a request continues; ``"new"`` starts one with a fresh id."""
    if value is None:
        return None
    if value == NEW_CONVERSATION:
        return str(uuid.uuid4())
    message = (
        '`conversation_id` must be "new" (to start a conversation) or a UUID: one an earlier '
        "answer returned, or one the client picks (a UUID not yet used starts a conversation)."
    )
    if not isinstance(value, str):
        raise InvalidRequest(message, param="conversation_id")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise InvalidRequest(message, param="conversation_id") from None


class ConversationStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def open(self, tenant_id: str, conversation_id: str, collection_id: str) -> Conversation:
        """The tenant's conversation (created when new); another tenant's is ``NotFound``."""
        async with self._database.connection() as conn:
            await conn.execute(
                QUERIES["conversation_insert"],
                {"id": conversation_id, "tenant_id": tenant_id, "collection_id": collection_id},
            )
            cur = await conn.execute(QUERIES["conversation_get"], {"id": conversation_id})
            row = await cur.fetchone()
            if row is None or str(row["tenant_id"]) != tenant_id:
                raise NotFound(f"No conversation `{conversation_id}`.", param="conversation_id")
            cur = await conn.execute(QUERIES["conversation_turns"], {"id": conversation_id})
            turns = [Turn(r["seq"], r["role"], r["content"]) for r in await cur.fetchall()]
        return Conversation(
            conversation_id,
            tenant_id,
            row["summary"],
            int(row["summary_through"]),
            row["summary_kind"],
            turns,
        )

    async def record(
        self,
        conversation: Conversation,
        question: str,
        answer: str,
        citations: list[dict[str, Any]],
        plan: HistoryPlan,
    ) -> None:
        """Append the exchange, and store a new summary when this answer made one. A
        conversation its tenant deleted while this answer was made stays deleted: the
        exchange is not recorded (the answer itself still reaches the client)."""
        async with self._database.connection() as conn:
            cur = await conn.execute(QUERIES["conversation_lock"], {"id": conversation.id})
            if await cur.fetchone() is None:
                log.info(
                    "conversation deleted during its answer; the exchange is not recorded",
                    extra={"conversation_id": conversation.id},
                )
                return
            for role, content, cites in (
                ("user", question, []),
                ("assistant", answer, citations),
            ):
                await conn.execute(
                    QUERIES["conversation_add_turn"],
                    {
                        "id": conversation.id,
                        "role": role,
                        # The model's answer is kept whatever it holds (a NUL escaped).
                        "content": escape_unstorable(content),
                        "citations": Jsonb(storable_json(cites)),
                    },
                )
            if plan.summary_through > conversation.summary_through:
                await conn.execute(
                    QUERIES["conversation_set_summary"],
                    {
                        "id": conversation.id,
                        "summary": None
                        if plan.summary is None
                        else escape_unstorable(plan.summary),
                        "through": plan.summary_through,
                        "kind": plan.summary_kind,
                    },
                )
            else:
                await conn.execute(QUERIES["conversation_touch"], {"id": conversation.id})

    async def delete(self, tenant_id: str, conversation_id: str) -> None:
        async with self._database.connection() as conn:
            cur = await conn.execute(
                QUERIES["conversation_delete"], {"id": conversation_id, "tenant_id": tenant_id}
            )
            if await cur.fetchone() is None:
                raise NotFound(f"No conversation `{conversation_id}`.", param="conversation_id")


def turn_tokens(turn: Turn, count: CountTokens) -> int:
    return count(turn.content) + TURN_OVERHEAD


async def plan_history(
    summary: str | None,
    summary_through: int,
    turns: Sequence[Turn],
    budget: int,
    count: CountTokens,
    *,
    keep_turns: int = 2,
    summarise: Summarise | None = None,
) -> HistoryPlan:
    """Fit the history into ``budget`` tokens (see the module docstring).

    ``turns`` are all stored turns; those at or below ``summary_through`` are already in
    ``summary``. ``summarise`` is ``None`` for a local model: older text is truncated instead.
    """
    pending = [t for t in turns if t.seq > summary_through]
    if budget <= 0:
        return HistoryPlan(summary, None, summary_through, [], len(turns), 0)
    summary_cost = count(summary) + TURN_OVERHEAD + 8 if summary else 0
    total = summary_cost + sum(turn_tokens(t, count) for t in pending)
    if total <= budget:
        return HistoryPlan(summary, None, summary_through, pending, 0, total)
    # Latest turns verbatim, newest first, while they fit (leaving room for a short summary).
    reserve = min(budget // 4, 256)
    verbatim: list[Turn] = []
    used = 0
    for turn in reversed(pending):
        cost = turn_tokens(turn, count)
        must_keep = len(verbatim) < keep_turns
        room = budget - (0 if must_keep else reserve)
        if used + cost > room:
            break
        verbatim.insert(0, turn)
        used += cost
    older = pending[: len(pending) - len(verbatim)]
    left = budget - used - TURN_OVERHEAD - 8
    text = "\n".join(
        ([f"(summary) {summary}"] if summary else []) + [f"{t.role}: {t.content}" for t in older]
    )
    new_summary: str | None
    kind: str
    if left <= 8 or not text:
        new_summary, kind = None, "truncated"
    elif summarise is not None:
        new_summary = truncate_tail(await summarise(text, left), left, count)
        kind = "model"
    else:
        marker = TRUNCATION_MARKER.format(n=len(older))
        new_summary = marker + "\n" + truncate_tail(text, left - count(marker) - 1, count)
        kind = "truncated"
    through = older[-1].seq if older else summary_through
    tokens = used + (count(new_summary) + TURN_OVERHEAD + 8 if new_summary else 0)
    compacted = sum(1 for t in turns if t.seq <= through)
    return HistoryPlan(new_summary, kind, through, verbatim, compacted, tokens)


def truncate_tail(text: str, budget: int, count: CountTokens) -> str:
    """The longest suffix of whole words of ``text`` within ``budget`` tokens."""
    if budget <= 0:
        return ""
    if count(text) <= budget:
        return text
    starts = [m.start() for m in _WORD.finditer(text)]
    low, high = 0, len(starts)  # find the smallest start index whose suffix fits
    while low < high:
        middle = (low + high) // 2
        if count(text[starts[middle] :]) <= budget:
            high = middle
        else:
            low = middle + 1
    return text[starts[low] :] if low < len(starts) else ""
