"""The request log's writer: a bounded buffer flushed to PostgreSQL in batches, off the
request path.

``submit`` is all a request pays: an append to an in-memory deque, never I/O. A background
task writes batches with ``COPY``, once per ``flush_interval_s`` (sooner when a full batch is
waiting). A write takes what was pending when it began: records submitted meanwhile wait for
the next one (before, the writer went on while records kept arriving, and steady sequential
traffic cost a ``COPY`` every third request). When the database is slow or down, records
wait in the buffer (at most ``buffer_size``) and are written once it answers again; past the
bound new records are dropped and counted (``dropped``, exported as a metric), so a request
never blocks or fails because of its record. A record the database refuses for its data is
dropped alone and counted (``refused``); the loop, its backoff and its supervision are the
shared ``WriterLoop``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Mapping, Sequence
from itertools import islice
from typing import Any

from psycopg import sql

from propylon.background import WriterLoop, write_isolating_refused
from propylon.db.database import Database
from propylon.observe.queries import query
from propylon.observe.record import COLUMNS, RequestRecord

log = logging.getLogger(__name__)

_COPY = sql.SQL("COPY request_log ({}) FROM STDIN").format(
    sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
)
_WRITE_TIMEOUT_S = 30.0
_DELETE_SLICE = 10_000
_SLICE_S = 0.0005  # longest stretch of rendering rows before other tasks get a turn


class RequestLog:
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
        self._db = database
        self._buffer: deque[RequestRecord] = deque()
        self._capacity = buffer_size
        self._batch_size = batch_size
        self._interval = flush_interval_s
        self._max_chars = max_content_chars
        self._retention_s = retention_days * 86400.0
        self._tenant_retention_s = {
            t: days * 86400.0 for t, days in (tenant_retention_days or {}).items()
        }
        self._retention_interval = retention_interval_s
        self._writing = asyncio.Lock()  # one writer: batches leave the buffer in order
        self._next_retention = 0.0
        self.loop = WriterLoop(
            "request_log",
            self.flush,
            log=log,
            interval_s=flush_interval_s,
            after_flush=self._maybe_delete_expired,
        )
        self.dropped = 0  # records refused because the buffer was full
        self.written = 0
        self.writes = 0  # COPY statements run

    @property
    def failed_writes(self) -> int:
        return self.loop.failed_writes

    @property
    def refused(self) -> int:
        """Records dropped because the database refused their data."""
        return self.loop.refused

    @property
    def pending(self) -> int:
        """Records waiting to be written."""
        return len(self._buffer)

    @property
    def capacity(self) -> int:
        return self._capacity

    def submit(self, record: RequestRecord) -> None:
        """Queue ``record`` for writing; drops (and counts) it when the buffer is full."""
        buffer = self._buffer
        if len(buffer) >= self._capacity:
            self.dropped += 1
            return
        buffer.append(record)
        if len(buffer) >= self._batch_size and self.loop.running:
            self.loop.wake()

    async def start(self) -> None:
        self.loop.start()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the background task, then write what is pending within ``timeout``."""
        await self.loop.stop(self._drain, timeout=timeout, lost=lambda: self.pending)

    async def flush(self) -> int:
        """Write the records pending now, not those submitted meanwhile; return how many were
        written."""
        total = 0
        async with self._writing:
            left = len(self._buffer)
            while left > 0 and self._buffer:
                taken, written = await self._write_batch(min(left, self._batch_size))
                left -= taken
                total += written
        return total

    async def _drain(self) -> None:
        while self._buffer:
            await self.flush()

    async def delete_expired(self) -> int:
        """Delete rows (and feedback) older than their tenant's retention period, in slices;
        return how many rows. A period of 0 keeps everything."""
        exempt = list(self._tenant_retention_s)
        deleted = 0
        periods: list[tuple[str | None, float]] = [(None, self._retention_s)]
        periods += list(self._tenant_retention_s.items())
        for tenant, older_than_s in periods:
            if older_than_s <= 0:
                continue
            params = {"older_than_s": older_than_s, "tenant_id": tenant, "exempt": exempt}
            deleted += await self._delete_slices("delete_expired", params)
            await self._delete_slices("delete_expired_feedback", params)
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

    async def _write_batch(self, size: int) -> tuple[int, int]:
        """Write the first ``size`` records; return how many left the buffer and how many of
        them were written (an unrenderable record is logged and skipped)."""
        batch = list(islice(self._buffer, size))
        rows: list[tuple[Any, ...]] = []
        # Rendering is CPU on the event loop: requests run between slices of at most
        # ``_SLICE_S`` (64 rows at a time held a refused request up to ~3 ms).
        slice_ends = time.perf_counter() + _SLICE_S
        for record in batch:
            try:
                rows.append(record.to_row(self._max_chars))
            except Exception:
                log.exception("request log: unrenderable record", extra={"id": record.request_id})
            if time.perf_counter() > slice_ends:
                await asyncio.sleep(0)
                slice_ends = time.perf_counter() + _SLICE_S
        refused = 0

        def drop(row: tuple[Any, ...], exc: BaseException) -> None:
            nonlocal refused
            refused += 1
            self.loop.count_refused(exc)

        await write_isolating_refused(rows, self._copy, drop)
        # Only now leave the buffer: a failed write keeps them for the next try.
        for _ in batch:
            self._buffer.popleft()
        self.written += len(rows) - refused
        self.writes += 1
        return len(batch), len(rows) - refused

    async def _copy(self, rows: Sequence[tuple[Any, ...]]) -> None:
        async with asyncio.timeout(_WRITE_TIMEOUT_S):  # not wait_for: see background.wait_event
            await self._copy_now(rows)

    async def _copy_now(self, rows: Sequence[tuple[Any, ...]]) -> None:
        async with (
            self._db.connection(timeout=5.0) as conn,
            conn.cursor() as cur,
            cur.copy(_COPY) as copy,
        ):
            for row in rows:
                await copy.write_row(row)
