"""Feedback on a request: ``POST /v1/feedback``.

A score (a number, or thumbs: up 1, down 0), a comment and labels about one request of the
caller's tenant, named by its request id (``x-request-id``) or the answer's id
(``chatcmpl-…``). The request's record may still be in the log's buffer when feedback comes
right after the answer: the buffer is written, then the request is looked up once more.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from psycopg.types.json import Jsonb

from propylon.db.database import Database
from propylon.errors import InvalidRequest, NotFound
from propylon.observe.queries import query
from propylon.principal import Principal

THUMBS = {"up": 1.0, "down": 0.0, "thumbs_up": 1.0, "thumbs_down": 0.0}
MAX_COMMENT = 10_000
MAX_SCORE = 1e12
_FIELDS = {"request_id", "response_id", "score", "comment", "metadata"}


@dataclass(frozen=True, slots=True)
class Feedback:
    request_id: str | None
    response_id: str | None
    score: float
    kind: str  # number | thumbs
    comment: str | None
    metadata: dict[str, Any] | None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> Feedback:
        """The body of ``POST /v1/feedback``; 400 naming the field that is wrong."""
        unknown = sorted(set(body) - _FIELDS)
        if unknown:
            raise InvalidRequest(f"Unknown field `{unknown[0]}`.", param=unknown[0])
        request_id = _optional_text(body, "request_id")
        response_id = _optional_text(body, "response_id")
        if (request_id is None) == (response_id is None):
            raise InvalidRequest(
                "Name the request with exactly one of `request_id` or `response_id`.",
                param="request_id",
            )
        score, kind = _score(body.get("score"))
        comment = _optional_text(body, "comment")
        if comment is not None and len(comment) > MAX_COMMENT:
            raise InvalidRequest(
                f"`comment` must be at most {MAX_COMMENT} characters.", param="comment"
            )
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidRequest("`metadata` must be an object.", param="metadata")
        return cls(request_id, response_id, score, kind, comment, metadata)


async def post_feedback(
    database: Database,
    principal: Principal,
    feedback: Feedback,
    flush: Callable[[], Awaitable[Any]],
) -> dict[str, Any]:
    """Store ``feedback`` against a request of the caller's tenant; 404 if there is none."""
    keys = {
        "tenant_id": principal.tenant_id,
        "request_id": feedback.request_id,
        "response_id": feedback.response_id,
    }
    request_id = await _find(database, keys)
    if request_id is None:
        await flush()  # the record may be waiting in the log's buffer
        request_id = await _find(database, keys)
    if request_id is None:
        named = feedback.request_id or feedback.response_id
        param = "request_id" if feedback.request_id is not None else "response_id"
        raise NotFound(f"No request `{named}` in your tenant's request log.", param=param)
    async with database.connection() as conn:
        cur = await conn.execute(
            query("insert_feedback"),
            {
                "tenant_id": principal.tenant_id,
                "request_id": request_id,
                "key_prefix": principal.key_prefix,
                "score": feedback.score,
                "kind": feedback.kind,
                "comment": feedback.comment,
                "metadata": Jsonb(feedback.metadata) if feedback.metadata is not None else None,
            },
        )
        row = await cur.fetchone()
    assert row is not None
    return {"object": "feedback", **row, "created_at": row["created_at"].isoformat()}


async def _find(database: Database, keys: dict[str, Any]) -> str | None:
    async with database.connection() as conn:
        row = await (await conn.execute(query("find_request"), keys)).fetchone()
    return None if row is None else str(row["request_id"])


def _score(value: Any) -> tuple[float, str]:
    if isinstance(value, bool):
        return (1.0 if value else 0.0), "thumbs"
    if isinstance(value, int | float) and abs(value) <= MAX_SCORE and math.isfinite(value):
        return float(value), "number"
    if isinstance(value, str) and value.lower() in THUMBS:
        return THUMBS[value.lower()], "thumbs"
    raise InvalidRequest(
        f"`score` must be a number within ±{MAX_SCORE:g}, or thumbs: `up` / `down` "
        "(or true / false).",
        param="score",
    )


def _optional_text(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidRequest(f"`{name}` must be a non-empty string.", param=name)
    return value
