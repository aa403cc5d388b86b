"""The request log's writer: records flushed to PostgreSQL in batches, off the request path
(a ``CopyBuffer``: bounded, drop and count when full, never blocking a request), and its
retention: rows, their feedback and their traces older than the tenant's period are deleted
periodically.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from propylon.db.database import Database
from propylon.observe.copy_buffer import CopyBuffer
from propylon.observe.queries import query
from propylon.observe.record import COLUMNS, RequestRecord

log = logging.getLogger(__name__)

_DELETE_SLICE = 10_000
_RETAINED = ("delete_expired", "delete_expired_feedback", "delete_expired_spans")


class RequestLog(CopyBuffer[RequestRecord]):
    """Buffers records and writes them from one background task (``start`` / ``stop``)."""

    def __init__(
        self,
        database: Database,
        *,
        buffer_size: int = 10_000,
        batch_size: int = 500,
        flush_interval_s: float = 1.0,
        max_content_chars: int = 32_768,
        retention_days: float = 30.0,
        retention_interval_s: float = 3600.0,
        tenant_retention_days: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(
            database,
            "request_log",
            COLUMNS,
            lambda record: record.to_row(max_content_chars),
            names=("request_id",),
            log=log,
            buffer_size=buffer_size,
            batch_size=batch_size,
            flush_interval_s=flush_interval_s,
            after_flush=self._maybe_delete_expired,
        )
        self._retention_s = retention_days * 86400.0
        self._tenant_retention_s = {
            t: days * 86400.0 for t, days in (tenant_retention_days or {}).items()
        }
        self._retention_interval = retention_interval_s
        self._next_retention = 0.0

    async def delete_expired(self) -> int:
        """Delete rows (and their feedback and traces) older than their tenant's retention
        period, in slices; return how many rows. A period of 0 keeps everything."""
        exempt = list(self._tenant_retention_s)
        deleted = 0
        periods: list[tuple[str | None, float]] = [(None, self._retention_s)]
        periods += list(self._tenant_retention_s.items())
        for tenant, older_than_s in periods:
            if older_than_s <= 0:
                continue
            params = {"older_than_s": older_than_s, "tenant_id": tenant, "exempt": exempt}
            for name in _RETAINED:
                count = await self._delete_slices(name, params)
                deleted += count if name == "delete_expired" else 0
        return deleted

    async def _delete_slices(self, name: str, params: dict[str, Any]) -> int:
        deleted = 0
        while True:
            async with self._db.connection(timeout=5.0) as conn:
                cur = await conn.execute(query(name), {**params, "limit": _DELETE_SLICE})
                count = cur.rowcount
            deleted += count
            if count < _DELETE_SLICE:
                return deleted

    async def _maybe_delete_expired(self) -> None:
        if time.monotonic() < self._next_retention:
            return
        self._next_retention = time.monotonic() + self._retention_interval
        try:
            await self.delete_expired()
        except Exception as exc:
            log.warning("request log: retention failed", extra={"error": repr(exc)})
