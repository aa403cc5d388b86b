"""A bounded buffer of rows flushed to one PostgreSQL table in batches, off the request path.

``submit`` is all a caller pays: an append to an in-memory deque, never I/O. A background
task writes batches with ``COPY``, once per ``flush_interval_s`` (sooner when a full batch is
waiting). A write takes what was pending when it began: items submitted meanwhile wait for
the next one (before, the writer went on while items kept arriving, and steady sequential
traffic cost a ``COPY`` every third request). When the database is slow or down, items wait
in the buffer (at most ``buffer_size``) and are written once it answers again; past the bound
new items are dropped and counted (``dropped``, exported as a metric), so a request never
blocks or fails because of what it submitted. A row the database refuses for its data is
dropped alone, counted (``refused``) and logged with the columns that name it (``names``: the
request log's request id, a span's trace, span and subject), never the rest; the loop, its
backoff and its supervision are the shared ``WriterLoop``. The request log and the trace
store are the two users.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from itertools import islice
from typing import Any, Generic, TypeVar

from psycopg import sql

from propylon.background import WriterLoop, write_isolating_refused
from propylon.db.database import Database

T = TypeVar("T")
_WRITE_TIMEOUT_S = 30.0
_SLICE_S = 0.0005  # longest stretch of rendering rows before other tasks get a turn


def copy_statement(table: str, columns: Sequence[str]) -> sql.Composed:
    return sql.SQL("COPY {} ({}) FROM STDIN").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    )


class CopyBuffer(Generic[T]):
    """Buffers items and writes them to ``table``, rendered by ``render`` as rows of
    ``columns``, from one background task (``start`` / ``stop``) named after the table."""

    def __init__(
        self,
        database: Database,
        table: str,
        columns: Sequence[str],
        render: Callable[[T], tuple[Any, ...]],
        *,
        names: Sequence[str] = (),
        log: logging.Logger,
        buffer_size: int = 10_000,
        batch_size: int = 500,
        flush_interval_s: float = 1.0,
        after_flush: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._db = database
        self._copy_sql = copy_statement(table, columns)
        self._render = render
        self._names = [(name, columns.index(name)) for name in names]
        self._log = log
        self._buffer: deque[T] = deque()
        self._capacity = buffer_size
        self._batch_size = batch_size
        self._writing = asyncio.Lock()  # one writer: batches leave the buffer in order
        self.loop = WriterLoop(
            table, self.flush, log=log, interval_s=flush_interval_s, after_flush=after_flush
        )
        self.dropped = 0  # items refused because the buffer was full
        self.written = 0
        self.writes = 0  # COPY statements run

    @property
    def failed_writes(self) -> int:
        return self.loop.failed_writes

    @property
    def refused(self) -> int:
        """Rows dropped because the database refused their data, or because they could not
        be rendered as rows."""
        return self.loop.refused

    @property
    def pending(self) -> int:
        """Items waiting to be written."""
        return len(self._buffer)

    @property
    def capacity(self) -> int:
        return self._capacity

    def submit(self, item: T) -> None:
        """Queue ``item`` for writing; drops (and counts) it when the buffer is full."""
        buffer = self._buffer
        if len(buffer) >= self._capacity:
            self.dropped += 1
            return
        buffer.append(item)
        if len(buffer) >= self._batch_size and self.loop.running:
            self.loop.wake()

    async def start(self) -> None:
        self.loop.start()

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop the background task, then write what is pending within ``timeout``."""
        await self.loop.stop(self._drain, timeout=timeout, lost=lambda: self.pending)

    async def flush(self) -> int:
        """Write the items pending now, not those submitted meanwhile; return how many were
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

    async def _write_batch(self, size: int) -> tuple[int, int]:
        """Write the first ``size`` items; return how many left the buffer and how many of
        them were written (an unrenderable item is logged and skipped)."""
        batch = list(islice(self._buffer, size))
        rows: list[tuple[Any, ...]] = []
        # Rendering is CPU on the event loop: requests run between slices of at most
        # ``_SLICE_S`` (64 rows at a time held a refused request up to ~3 ms).
        slice_ends = time.perf_counter() + _SLICE_S
        for item in batch:
            try:
                rows.append(self._render(item))
            except Exception:
                self.loop.refused += 1  # dropped like a refused row: counted where one looks
                self._log.exception(f"{self.loop.name}: unrenderable row")
            if time.perf_counter() > slice_ends:
                await asyncio.sleep(0)
                slice_ends = time.perf_counter() + _SLICE_S
        refused = 0

        def drop(row: tuple[Any, ...], exc: BaseException) -> None:
            nonlocal refused
            refused += 1
            named = {name: row[i] for name, i in self._names if row[i] is not None}
            self.loop.count_refused(exc, named)

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
            cur.copy(self._copy_sql) as copy,
        ):
            for row in rows:
                await copy.write_row(row)
