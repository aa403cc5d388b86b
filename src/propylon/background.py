"""The one loop every background writer runs (the request log, spend, the semantic cache's
write-behind): wait for work, flush it, and keep going whatever the database does.

A writer hands its ``flush`` to a ``WriterLoop``. ``flush`` writes what is pending and raises
when the database does not take it; rows it refuses for their own data are found with
``write_isolating_refused`` and dropped one by one (counted on ``refused`` and logged, named by
what the writer says identifies the row, such as its request id, never by its data), so one
bad row never holds the others back. Anything else is taken for an outage: the rows stay pending and
the loop tries again after a capped exponential delay. The loop is supervised: should its body
ever raise, it is logged, counted on ``restarts`` and run again. ``healthy`` is false while
writes fail (``/readyz`` answers 503 and ``propylon_writer_failing`` reads 1).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")

_MAX_EXPONENT = 16  # 2**16 times the base is past any cap: the delay never overflows


def refused_for_its_data(exc: BaseException) -> bool:
    """The database refused a row for its data (SQLSTATE class 22, data exception, 23,
    integrity, or 54, a program limit such as an index entry's size), or the driver could not
    encode it (a NUL in text, a lone surrogate) — not an outage. Read off the error, no driver
    imported: DB-API 2.0 names a client-side data error ``DataError`` in every driver."""
    if isinstance(exc, UnicodeError):
        return True
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):  # 54: a program limit, such as a value too large to index
        return sqlstate[:2] in ("22", "23", "54")
    return any(cls.__name__ == "DataError" for cls in type(exc).__mro__)


def refusal(exc: BaseException) -> str:
    """What to log of a refusal: the error's class and SQLSTATE, not its message. The message
    quotes the row: PostgreSQL's CONTEXT repeats the value ``COPY`` was given, a
    ``UnicodeEncodeError`` holds the whole string, and the row may hold a user's text."""
    sqlstate = getattr(exc, "sqlstate", None)
    name = type(exc).__name__
    return f"{name} (SQLSTATE {sqlstate})" if isinstance(sqlstate, str) else name


async def write_isolating_refused(
    rows: Sequence[T],
    write: Callable[[Sequence[T]], Awaitable[object]],
    refused: Callable[[T, BaseException], None],
) -> None:
    """``write(rows)``; when the database refuses that for a row's data, write each row alone
    and hand the refused ones to ``refused``. An outage (any other error) is raised."""
    try:
        await write(rows)
        return
    except Exception as exc:
        if not refused_for_its_data(exc):
            raise
        if len(rows) == 1:
            refused(rows[0], exc)
            return
    for row in rows:
        try:
            await write([row])
        except Exception as exc:
            if not refused_for_its_data(exc):
                raise
            refused(row, exc)


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until ``event`` is set (True) or ``timeout`` seconds pass (False).

    Not ``asyncio.wait_for(event.wait(), timeout)``: on Python 3.11 that swallows a
    cancellation arriving just as the event is set, so a loop stopped by cancelling its task
    goes on forever (a shutdown that follows ``wake`` with ``cancel`` hung that way).
    ``asyncio.timeout`` tells its own expiry from a cancellation.
    """
    try:
        async with asyncio.timeout(timeout):
            await event.wait()
    except TimeoutError:
        return False
    return True


async def stop_tasks(*tasks: asyncio.Task[Any] | None) -> None:
    """Cancel ``tasks`` and wait until every one has ended, cancelling again each second.

    One cancel is not enough on Python 3.11: ``asyncio.wait_for`` (psycopg_pool waits for a
    connection with it) swallows a cancel that arrives as its wait completes, and a loop task
    then runs on while its stopper waits forever. Errors of the tasks are not raised here.
    """
    live = [task for task in tasks if task is not None]
    while pending := [task for task in live if not task.done()]:
        for task in pending:
            task.cancel()
        await asyncio.wait(pending, timeout=1.0)
    for task in live:
        if not task.cancelled():
            task.exception()  # retrieved: a loop's own failure was logged where it happened


def backoff_delay(failures: int, base_s: float, cap_s: float) -> float:
    """``base_s`` doubled per consecutive failure, at most ``cap_s``; never overflows."""
    return min(base_s * float(2 ** min(failures, _MAX_EXPONENT)), cap_s)


class WriterLoop:
    """Runs ``flush`` in one supervised background task.

    The task waits until ``wake`` is called or ``interval_s`` passes (``None``: only ``wake``),
    then ``linger_s`` more so one write carries what arrives meanwhile, then flushes. A flush
    that raises is an outage: it is retried after ``backoff_delay`` (at most ``max_backoff_s``)
    until it succeeds. ``after_flush`` runs after each successful flush (housekeeping).
    """

    def __init__(
        self,
        name: str,
        flush: Callable[[], Awaitable[object]],
        *,
        log: logging.Logger,
        interval_s: float | None = 1.0,
        linger_s: float = 0.0,
        max_backoff_s: float = 5.0,
        after_flush: Callable[[], Awaitable[object]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._flush = flush
        self._log = log
        self._interval = interval_s
        self._linger = linger_s
        self._max_backoff = max(max_backoff_s, interval_s or 0.0, linger_s)
        self._after_flush = after_flush
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.failures = 0  # consecutive failed flushes
        self.failed_writes = 0
        self.restarts = 0
        self.refused = 0  # rows dropped because the database refused their data
        self.failing_since: float | None = None

    @property
    def healthy(self) -> bool:
        """The last flush succeeded (or none has run yet)."""
        return self.failures == 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def count_refused(self, exc: BaseException, row: Mapping[str, object] | None = None) -> None:
        """Count one row the database refused and log it with ``row``: the fields that name
        it for an operator (its request id…), given by the writer that knows its rows. The
        row's data is not logged, nor the error's message (see ``refusal``)."""
        self.refused += 1
        self._log.warning(
            "%s: a row refused by the database was dropped",
            self.name,
            extra={**(row or {}), "writer": self.name, "error": refusal(exc)},
        )

    def start(self) -> None:
        """Start the task (again a no-op while it runs); needs a running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._supervise(), name=f"propylon-{self.name}"
            )

    def wake(self) -> None:
        """Flush soon (after ``linger_s``), starting the task if needed."""
        self.start()
        self._wake.set()

    async def stop(
        self,
        drain: Callable[[], Awaitable[object]],
        *,
        timeout: float,
        lost: Callable[[], int],
    ) -> None:
        """Stop the task, then run ``drain`` for at most ``timeout`` seconds. A drain that
        fails or runs out of time is logged with what is ``lost``, never raised."""
        task, self._task = self._task, None
        await stop_tasks(task)
        try:
            await asyncio.wait_for(drain(), timeout)
        except Exception as exc:
            self._log.warning(
                "%s: records lost at shutdown",
                self.name,
                extra={"writer": self.name, "lost": lost(), "error": repr(exc)},
            )

    async def _supervise(self) -> None:
        while True:
            try:
                await self._run()
            except Exception:
                self.restarts += 1
                self._log.exception("%s: writer failed; restarted", self.name)
                await asyncio.sleep(backoff_delay(self.restarts, 0.05, self._max_backoff))

    async def _run(self) -> None:
        delay = self._interval
        while True:
            if self.failures:
                await asyncio.sleep(delay or 0.0)
            else:
                await wait_event(self._wake, delay)
                if self._linger:
                    await asyncio.sleep(self._linger)
            self._wake.clear()
            try:
                await self._flush()
            except Exception as exc:
                self._failed(exc)
                delay = backoff_delay(
                    self.failures, self._interval or self._linger or 0.05, self._max_backoff
                )
                continue
            self._succeeded()
            delay = self._interval
            if self._after_flush is not None:
                await self._after_flush()

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        self.failed_writes += 1
        if self.failing_since is None:
            self.failing_since = self._clock()
            self._log.warning(
                "%s: database unavailable; records wait in memory",
                self.name,
                extra={"writer": self.name, "error": repr(exc)},
            )

    def _succeeded(self) -> None:
        if self.failing_since is not None:
            self._log.info("%s: database back; pending records written", self.name)
        self.failures = 0
        self.failing_since = None
