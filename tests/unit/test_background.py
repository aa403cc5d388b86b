"""The one background-writer loop: refused rows told from outages, capped backoff,
supervision, health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import psycopg
import pytest

from propylon.background import (
    WriterLoop,
    backoff_delay,
    refused_for_its_data,
    stop_tasks,
    write_isolating_refused,
)

log = logging.getLogger("test.background")


class ServerError(Exception):
    """An error carrying a SQLSTATE, as psycopg's server-side errors do."""

    def __init__(self, sqlstate: str) -> None:
        super().__init__(sqlstate)
        self.sqlstate = sqlstate


def client_side_nul() -> Exception:
    try:
        psycopg.types.string.StrDumper(str).dump("a\x00b")
    except Exception as exc:
        return exc
    raise AssertionError("psycopg took a NUL")


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        (ServerError("22P05"), True),  # untranslatable character (\u0000 in jsonb)
        (ServerError("22001"), True),  # string too long
        (ServerError("23505"), True),  # unique violation
        (psycopg.errors.ProgramLimitExceeded(), True),  # an index entry too large (54000)
        (ServerError("08006"), False),  # connection failure
        (ServerError("57P01"), False),  # admin shutdown
        (client_side_nul(), True),  # psycopg refuses a NUL before sending
        (UnicodeEncodeError("utf-8", "\udc80", 0, 1, "surrogates not allowed"), True),
        (psycopg.OperationalError("connection refused"), False),
        (ConnectionError("down"), False),
        (TimeoutError(), False),
    ],
)
def test_a_refused_row_is_told_from_an_outage(error: Exception, refused: bool) -> None:
    assert refused_for_its_data(error) is refused


def test_a_refused_row_is_logged_with_what_names_it_and_not_with_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A ``UnicodeEncodeError`` holds the whole string it could not encode: logging the
    error itself would log the user's text."""
    loop = WriterLoop("test", lambda: asyncio.sleep(0), log=log)
    loop.count_refused(
        UnicodeEncodeError("utf-8", "user's own words \udc80", 17, 18, "surrogates not allowed"),
        {"request_id": "r-1"},
    )
    loop.count_refused(ServerError("22P05"))
    first, second = [r for r in caplog.records if "refused by the database" in r.getMessage()]
    assert (first.__dict__["request_id"], first.__dict__["error"]) == ("r-1", "UnicodeEncodeError")
    assert second.__dict__["error"] == "ServerError (SQLSTATE 22P05)"
    assert "request_id" not in second.__dict__
    assert "own words" not in caplog.text and "own words" not in repr(first.__dict__)
    assert loop.refused == 2


def test_the_backoff_doubles_up_to_its_cap_and_never_overflows() -> None:
    assert [backoff_delay(n, 0.1, 5.0) for n in range(4)] == [0.1, 0.2, 0.4, 0.8]
    assert backoff_delay(100, 0.1, 5.0) == 5.0
    assert backoff_delay(10**6, 1.0, 5.0) == 5.0  # 2**failures overflowed a float past 1,024


async def test_only_the_refused_row_is_dropped_and_an_outage_is_raised() -> None:
    written: list[str] = []
    dropped: list[str] = []

    async def write(rows: Sequence[str]) -> None:
        if "bad" in rows:
            raise ServerError("22021")  # invalid byte sequence
        written.extend(rows)

    await write_isolating_refused(["a", "bad", "b"], write, lambda row, exc: dropped.append(row))
    assert (written, dropped) == (["a", "b"], ["bad"])

    async def down(rows: Sequence[str]) -> None:
        raise ConnectionError("database is down")

    with pytest.raises(ConnectionError):
        await write_isolating_refused(["a"], down, lambda row, exc: dropped.append(row))
    assert dropped == ["bad"]


async def wait_until(predicate: object, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]  # noqa: ASYNC110 - no event to wait on
            await asyncio.sleep(0.005)


async def test_a_failing_writer_is_unhealthy_and_retries_until_it_writes() -> None:
    down = True
    flushed = 0

    async def flush() -> None:
        nonlocal flushed
        if down:
            raise ConnectionError("database is down")
        flushed += 1

    loop = WriterLoop("test", flush, log=log, interval_s=0.01, max_backoff_s=0.05)
    loop.start()
    await wait_until(lambda: loop.failed_writes >= 3)
    assert not loop.healthy and loop.failing_since is not None
    down = False
    await wait_until(lambda: flushed >= 1)
    assert loop.healthy and loop.failing_since is None
    await loop.stop(flush, timeout=1.0, lost=lambda: 0)


async def test_a_writer_whose_loop_dies_is_restarted() -> None:
    flushed = 0
    blown = False

    async def flush() -> None:
        nonlocal flushed
        flushed += 1

    async def housekeeping() -> None:
        nonlocal blown
        if not blown:
            blown = True
            raise OverflowError("a bug outside the flush")

    loop = WriterLoop("test", flush, log=log, interval_s=0.01, after_flush=housekeeping)
    loop.start()
    await wait_until(lambda: loop.restarts == 1 and flushed >= 3)
    assert loop.running and loop.healthy
    await loop.stop(flush, timeout=1.0, lost=lambda: 0)


async def test_stopping_reports_what_is_lost_instead_of_raising(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def down() -> None:
        raise ConnectionError("database is down")

    loop = WriterLoop("test", down, log=log, interval_s=60.0)
    loop.start()
    await loop.stop(down, timeout=1.0, lost=lambda: 7)
    (lost,) = [r for r in caplog.records if "records lost at shutdown" in r.getMessage()]
    assert lost.lost == 7  # type: ignore[attr-defined]


async def test_a_stop_that_follows_a_wake_ends_the_task() -> None:
    """The wake lands and the cancel arrives before the task has run again: the stop still
    ends it (``asyncio.wait_for`` on Python 3.11 swallowed that cancel and the task ran on)."""
    flushed = asyncio.Event()

    async def flush() -> None:
        flushed.set()

    loop = WriterLoop("test", flush, log=logging.getLogger("test"), interval_s=60.0)
    loop.start()
    await asyncio.sleep(0)  # the task now waits for a wake
    loop.wake()
    await asyncio.sleep(0)  # the wake has landed; the task is due to resume
    async with asyncio.timeout(10):
        await loop.stop(flush, timeout=5, lost=lambda: 0)
    assert not loop.running


async def test_a_stop_ends_a_writer_whose_flush_swallowed_the_first_cancel() -> None:
    started = asyncio.Event()

    async def stubborn() -> None:
        started.set()
        # As a library's wait_for may do: the cancel is lost and the task goes on.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()  # parked until cancelled

    loop = WriterLoop("test", stubborn, log=logging.getLogger("test"), interval_s=None)
    loop.wake()
    await started.wait()
    async with asyncio.timeout(10):
        await loop.stop(lambda: asyncio.sleep(0), timeout=5, lost=lambda: 0)
    assert not loop.running


async def test_stop_tasks_ends_a_loop_that_swallows_a_cancel() -> None:
    """A heartbeat-style loop whose wait swallowed one cancel (as psycopg_pool's
    ``wait_for`` can) is cancelled again until it ends."""
    swallowed = 0
    parked = asyncio.Event()

    async def loop() -> None:
        nonlocal swallowed
        while True:
            try:
                parked.set()
                await asyncio.Event().wait()  # parked until cancelled
            except asyncio.CancelledError:
                if swallowed:
                    raise
                swallowed += 1

    task = asyncio.create_task(loop())
    await parked.wait()
    async with asyncio.timeout(10):
        await stop_tasks(task, None)
    assert task.cancelled() and swallowed == 1
