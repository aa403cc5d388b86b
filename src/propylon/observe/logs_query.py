"""Reading the request log back: ``GET /v1/logs`` filters and their query."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from psycopg.errors import QueryCanceled
from psycopg.types.json import Jsonb

from propylon.db.database import Database
from propylon.errors import InvalidRequest, PermissionDenied
from propylon.gateway.call import CACHE_STATUSES
from propylon.observe.queries import query
from propylon.params import BIGINT_MAX, int_param, time_param
from propylon.principal import Principal

DEFAULT_LIMIT = 50
MAX_LIMIT = 500
_STATUS_CLASSES = {"2xx": 2, "3xx": 3, "4xx": 4, "5xx": 5}
GUARD_ACTIONS = ("pass", "flag", "sanitize", "block", "off")
MAX_TEXT = 200


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which records to list, newest first. ``tenant_id`` is honoured for admins only."""

    since: datetime
    until: datetime
    model: str | None = None
    status: int | None = None
    status_class: int | None = None
    failed: bool | None = None
    cache_status: str | None = None
    metadata: dict[str, Any] | None = None
    request_id: str | None = None
    tenant_id: str | None = None
    origin: str | None = None  # "user" | "internal"; None: both
    guard: str | None = None  # the guard's action: pass | flag | sanitize | block | off
    key_prefix: str | None = None
    text: str | None = None  # free text over prompts and answers
    before_id: int | None = None
    limit: int = DEFAULT_LIMIT

    @classmethod
    def from_params(
        cls, params: Iterable[tuple[str, str]], now: datetime | None = None
    ) -> LogFilter:
        """Parse query parameters: ``since``/``until`` (ISO 8601 or epoch seconds), ``model``,
        ``status`` (``200``, ``4xx``, ``error``, ``ok``), ``cache_status``, ``request_id``,
        ``tenant_id``, ``metadata.<key>=<value>`` (repeatable) or ``metadata=<JSON object>``,
        ``origin`` (``user`` or ``internal``), ``guard`` (the guard's action), ``key_prefix``,
        ``q`` (free text over prompts and answers, where content is captured), ``before``
        (the ``id`` to page from) and ``limit`` (1–500)."""
        now = now or datetime.now(UTC)
        values: dict[str, str] = {}
        metadata: dict[str, Any] = {}
        for key, value in params:
            if key.startswith("metadata."):
                metadata[key.removeprefix("metadata.")] = value
            elif key == "metadata":
                metadata.update(_json_object(value))
            else:
                values[key] = value
        status = values.get("status")
        code, status_class, failed = _status(status) if status else (None, None, None)
        since, until = values.get("since"), values.get("until")
        before, limit = values.get("before"), values.get("limit")
        return cls(
            since=now - timedelta(days=1) if since is None else time_param(since, "since"),
            until=now + timedelta(minutes=1) if until is None else time_param(until, "until"),
            model=values.get("model"),
            status=code,
            status_class=status_class,
            failed=failed,
            cache_status=_choice(values.get("cache_status"), "cache_status", CACHE_STATUSES),
            metadata=metadata or None,
            request_id=values.get("request_id"),
            tenant_id=values.get("tenant_id"),
            origin=_origin(values.get("origin")),
            guard=_choice(values.get("guard"), "guard", GUARD_ACTIONS),
            key_prefix=values.get("key_prefix"),
            text=_text(values.get("q")),
            before_id=None if before is None else int_param(before, "before", 0, BIGINT_MAX),
            limit=DEFAULT_LIMIT if limit is None else int_param(limit, "limit", 1, MAX_LIMIT),
        )


async def list_logs(
    database: Database,
    principal: Principal,
    filter: LogFilter,
    timeout_s: float | None = None,
) -> dict[str, Any]:
    """One page of the caller's records (every tenant's for an operator), newest first;
    without the ``logs:read`` feature, rows come without prompts and answers. A query that
    runs longer than ``timeout_s`` is stopped: a clear 400 asking for a narrower search."""
    tenant = principal.reading_tenant(filter.tenant_id)
    if filter.text is not None and not principal.has_feature("logs:read"):
        # A search over content is a way of reading it.
        raise PermissionDenied(
            "Searching prompts and answers (`q`) needs a key with the `logs:read` feature.",
            param="q",
        )
    params = {
        "since": filter.since,
        "until": filter.until,
        "tenant_id": tenant,
        "model": filter.model,
        "status": filter.status,
        "status_class": filter.status_class,
        "failed": filter.failed,
        "cache_status": filter.cache_status,
        "metadata": Jsonb(filter.metadata) if filter.metadata is not None else None,
        "request_id": filter.request_id,
        "origin": filter.origin,
        "guard": filter.guard,
        "key_prefix": filter.key_prefix,
        "q": filter.text,
        "before_id": filter.before_id,
        "limit": filter.limit + 1,
    }
    try:
        async with database.connection() as conn, conn.transaction():
            if timeout_s is not None:
                # A combination of filters the planner misjudges can walk the whole log.
                await conn.execute(
                    f"SET LOCAL statement_timeout = {max(1, round(timeout_s * 1e3))}"
                )
            # Planned for these values every time: a generic plan of the optional filters
            # (`x IS NULL OR …`) cannot use their indexes.
            cur = await conn.execute(query("list_logs"), params, prepare=False)
            rows = await cur.fetchall()
    except QueryCanceled:
        raise InvalidRequest(
            f"This search ran longer than {timeout_s:g} s and was stopped: narrow the time "
            "window (`since`, `until`) or the filters.",
            param="since",
            code="search_too_broad",
        ) from None
    has_more = len(rows) > filter.limit
    content = principal.has_feature("logs:read")
    data = [render_log(row, content) for row in rows[: filter.limit]]
    return {
        "object": "list",
        "data": data,
        "has_more": has_more,
        "next_before": data[-1]["id"] if has_more else None,
    }


def render_log(row: dict[str, Any], content: bool) -> dict[str, Any]:
    """A row as the API shows it; prompts and answers only to keys with ``logs:read``."""
    out = dict(row)
    out["created_at"] = row["created_at"].isoformat()
    if not content:
        out["prompt"] = out["response"] = None
        out["content_withheld"] = True
    return out


def _choice(value: str | None, name: str, allowed: tuple[str, ...]) -> str | None:
    if value is not None and value not in allowed:
        raise InvalidRequest(f"`{name}` must be one of {', '.join(allowed)}.", param=name)
    return value


def _text(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    if len(value) > MAX_TEXT:
        raise InvalidRequest(f"`q` must be at most {MAX_TEXT} characters.", param="q")
    return value.strip()


def _origin(value: str | None) -> str | None:
    if value is not None and value not in ("user", "internal"):
        raise InvalidRequest("`origin` must be `user` or `internal`.", param="origin")
    return value


def _status(value: str) -> tuple[int | None, int | None, bool | None]:
    if value in _STATUS_CLASSES:
        return None, _STATUS_CLASSES[value], None
    if value in ("error", "ok"):
        return None, None, value == "error"
    message = "`status` must be an HTTP status, 2xx…5xx, error or ok."
    return int_param(value, "status", 100, 599, message), None, None


def _json_object(value: str) -> dict[str, Any]:
    try:
        parsed = orjson.loads(value)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidRequest("`metadata` must be a JSON object.", param="metadata")
    return parsed
