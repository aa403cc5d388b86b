"""The filtered request log as a file: ``GET /v1/logs/export?format=jsonl|csv``.

The same filters and the same visibility as ``GET /v1/logs`` (content only with
``logs:read``), every matching row newest first, streamed page by page so an export of a
million rows never sits in memory. The first page is read before the response starts: a
refused filter is a clear 4xx, never a broken download.

A CSV cell holding text that a spreadsheet would run as a formula (it begins with ``=``,
``+``, ``-``, ``@``, a tab or a carriage return: a client chooses the model name, the prompt,
the answer's first words) is written with a leading ``'``, which spreadsheets show as text.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import orjson

from propylon.db.database import Database
from propylon.errors import InvalidRequest
from propylon.observe.logs_query import MAX_LIMIT, LogFilter, list_logs
from propylon.principal import Principal

FORMATS = {"jsonl": "application/x-ndjson", "csv": "text/csv; charset=utf-8"}
MAX_EXPORT_ROWS = 1_000_000
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def export_format(value: str | None) -> str:
    chosen = value or "jsonl"
    if chosen not in FORMATS:
        raise InvalidRequest("`format` must be `jsonl` or `csv`.", param="format")
    return chosen


async def export_logs(
    database: Database, principal: Principal, filter: LogFilter, format: str
) -> AsyncIterator[bytes]:
    """The rows matching ``filter`` as JSON lines or CSV, at most ``MAX_EXPORT_ROWS``."""
    paged = replace(filter, limit=MAX_LIMIT)
    first = await list_logs(database, principal, paged)  # raises before the response starts
    return _stream(database, principal, paged, first, format)


async def _stream(
    database: Database,
    principal: Principal,
    filter: LogFilter,
    page: dict[str, Any],
    format: str,
) -> AsyncIterator[bytes]:
    sent = 0
    columns: list[str] | None = None
    while True:
        rows = page["data"][: MAX_EXPORT_ROWS - sent]
        if format == "jsonl":
            yield b"".join(orjson.dumps(row) + b"\n" for row in rows)
        elif rows or columns is None:
            columns = columns or (list(rows[0]) if rows else ["id"])
            yield _csv(columns, rows, header=sent == 0)
        sent += len(rows)
        if not page["has_more"] or sent >= MAX_EXPORT_ROWS:
            return
        page = await list_logs(database, principal, replace(filter, before_id=page["next_before"]))


def _csv(columns: list[str], rows: list[dict[str, Any]], *, header: bool) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    if header:
        writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return out.getvalue().encode()


def _cell(value: Any) -> Any:
    if isinstance(value, dict | list):
        return orjson.dumps(value).decode()
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return "" if value is None else value
