"""Reading stored traces back: ``GET /v1/traces/{trace_id}`` and ``GET /v1/traces``."""

from __future__ import annotations

import re
from typing import Any

from propylon.db.database import Database
from propylon.errors import InvalidRequest, NotFound
from propylon.observe.queries import query
from propylon.principal import Principal

_TRACE_ID = re.compile(r"[0-9a-f]{32}")
SUBJECTS = ("request_id", "run_id", "job_id")


def subject_of(params: dict[str, str]) -> str:
    """``request:<id>``, ``run:<id>`` or ``job:<id>`` from exactly one of the parameters."""
    given = [(name, params[name]) for name in SUBJECTS if params.get(name)]
    if len(given) != 1:
        raise InvalidRequest(
            "Name exactly one of `request_id`, `run_id` or `job_id`.", param="request_id"
        )
    name, value = given[0]
    return f"{name.removesuffix('_id')}:{value}"


async def read_trace(database: Database, principal: Principal, trace_id: str) -> dict[str, Any]:
    """Every span of the trace, oldest first, if it belongs to the caller's tenant (any
    tenant for an operator); 404 otherwise, the same for another tenant's trace."""
    if not _TRACE_ID.fullmatch(trace_id):
        raise NotFound(f"No trace `{trace_id}`.", param="trace_id")
    tenant = None if principal.is_operator else principal.tenant_id
    async with database.connection() as conn:
        cur = await conn.execute(query("trace_spans"), {"trace_id": trace_id, "tenant_id": tenant})
        rows = await cur.fetchall()
    if not rows:
        raise NotFound(f"No trace `{trace_id}`.", param="trace_id")
    return _trace(trace_id, rows)


async def find_traces(database: Database, principal: Principal, subject: str) -> dict[str, Any]:
    """The caller's traces of one request, run or job, newest first, each with its spans
    (one query: the spans of every trace found, grouped here)."""
    tenant = None if principal.is_operator else principal.tenant_id
    async with database.connection() as conn:
        cur = await conn.execute(query("find_traces"), {"subject": subject, "tenant_id": tenant})
        rows = await cur.fetchall()
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_trace.setdefault(row["trace_id"], []).append(row)
    data = [_trace(trace_id, spans) for trace_id, spans in by_trace.items()]
    return {"object": "list", "subject": subject, "data": data}


def _trace(trace_id: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    spans = [{**row, "started_at": row["started_at"].isoformat()} for row in rows]
    return {"object": "trace", "trace_id": trace_id, "spans": spans}
