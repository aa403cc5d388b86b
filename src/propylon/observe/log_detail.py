"""One request of the log in full: ``GET /v1/logs/{id}``.

The record, its messages and answer (``logs:read`` only) parsed back from the stored text,
the tool calls it asked for, the route with each attempt, where its time went, the headers
the client got, the calls Propylon made for it (RAG's inner model calls hang under their
parent) and the feedback posted about it.
"""

from __future__ import annotations

from typing import Any

import orjson

from propylon.db.database import Database
from propylon.errors import NotFound
from propylon.observe.logs_query import render_log
from propylon.observe.queries import query
from propylon.params import BIGINT_MAX, digits
from propylon.principal import Principal


async def log_detail(database: Database, principal: Principal, log_id: str) -> dict[str, Any]:
    """The record named by its row id or request id, in the caller's tenant (any tenant for
    an operator); 404 otherwise."""
    tenant = None if principal.is_operator else principal.tenant_id
    row_id = digits(log_id, 0, BIGINT_MAX)
    async with database.connection() as conn:
        cur = await conn.execute(
            query("get_log"), {"row_id": row_id, "request_id": log_id, "tenant_id": tenant}
        )
        row = await cur.fetchone()
        if row is None:
            raise NotFound(f"No request `{log_id}` in the request log.", param="id")
        keys = {"request_id": row["request_id"], "tenant_id": row["tenant_id"]}
        children = await (await conn.execute(query("log_children"), keys)).fetchall()
        feedback = await (await conn.execute(query("request_feedback"), keys)).fetchall()
    content = principal.has_feature("logs:read")
    out = render_log(row, content)
    out["object"] = "request_log.detail"
    out["messages"] = _parsed(out["prompt"])
    out["answer"] = _parsed(out["response"])
    out["tool_calls"] = _tool_calls(out["answer"])
    out["overhead"] = _overhead(row)
    out["children"] = [{**c, "created_at": c["created_at"].isoformat()} for c in children]
    out["feedback"] = [{**f, "created_at": f["created_at"].isoformat()} for f in feedback]
    scores = [float(f["score"]) for f in feedback]
    out["feedback_score"] = sum(scores) / len(scores) if scores else None
    return out


def _parsed(text: str | None) -> Any:
    """Stored content back as JSON when it is (messages, message objects), else the text."""
    if text is None or text[:1] not in ("[", "{"):
        return text
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text  # cut at max_content_chars: shown as stored


def _tool_calls(answer: Any) -> list[Any]:
    """The tool calls of the answer: message objects (``tool_calls``) or a stream's
    collected ``{"content", "tool_calls"}``."""
    found: list[Any] = []
    items = answer if isinstance(answer, list) else [answer]
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("tool_calls"), list):
            found.extend(item["tool_calls"])
    return found


def _overhead(row: dict[str, Any]) -> dict[str, Any]:
    """Where the request's time went: upstream attempts, the guard, Propylon itself."""
    guard = row["guard"] if isinstance(row["guard"], dict) else {}
    return {
        "latency_ms": row["latency_ms"],
        "ttft_ms": row["ttft_ms"],
        "upstream_ms": row["upstream_ms"],
        "overhead_ms": row["overhead_ms"],
        "guard_ms": guard.get("ms"),
        "attempts_ms": [a.get("ms") for a in row["attempts"] or []],
    }
