"""Run events reach live followers through the LISTEN hub: a follower reads the log once to
catch up, then is woken by each event's NOTIFY (which carries the event) instead of polling;
the partial output is appended, never rewritten."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from propylon.db.database import Database
from propylon.runs import events
from propylon.runs.events import RunEventLog
from tests.support.job_rig import JobRig
from tests.support.job_rig import rig as rig  # the fixture

FOLLOWERS = 20


@asynccontextmanager
async def counted_database(url: str) -> AsyncIterator[tuple[Database, list[int]]]:
    """A second pool for the followers, counting the connections they take (one per query)."""
    database = Database(url, max_size=4)
    await database.open()
    taken: list[int] = []
    real = database.connection

    def connection(*args: Any, **kwargs: Any) -> Any:
        taken.append(1)
        return real(*args, **kwargs)

    database.connection = connection  # type: ignore[method-assign]
    try:
        yield database, taken
    finally:
        await database.close()


async def new_run(database: Database) -> str:
    async with database.connection() as conn:
        cur = await conn.execute(
            "INSERT INTO runs (tenant_id, kind, spec, principal)"
            " VALUES (%s, 'chat', '{}', '{}') RETURNING id",
            (str(uuid.uuid4()),),
        )
        row = await cur.fetchone()
    assert row is not None
    return str(row["id"])


async def running() -> str:
    return "running"


async def test_followers_are_woken_by_notifications_not_by_polling(
    rig: JobRig, database_url: str
) -> None:
    run_id = await new_run(rig.database)
    log = RunEventLog(rig.database, run_id)
    await log.append("run_started", {"attempt": 1})
    async with counted_database(database_url) as (database, taken):
        received: list[list[dict[str, Any]]] = [[] for _ in range(FOLLOWERS)]
        caught_up = [asyncio.Event() for _ in range(FOLLOWERS)]

        async def follower(n: int) -> None:
            async for event in events.follow(database, rig.hub, run_id, 0, running):
                received[n].append(event)
                caught_up[n].set()

        tasks = [asyncio.create_task(follower(n)) for n in range(FOLLOWERS)]
        for event in caught_up:  # each has read the log once and is now listening
            await asyncio.wait_for(event.wait(), 30)
        assert len(taken) == FOLLOWERS

        for n in range(10):
            await log.append_output("answer", f"piece {n} ", first=n == 0)
        await log.append("run_succeeded", {"result": {}})
        await asyncio.wait_for(asyncio.gather(*tasks), 30)

    assert len(taken) == FOLLOWERS  # eleven events, not one more query
    for got in received:
        assert [e["id"] for e in got] == list(range(1, 13))
        assert [e["type"] for e in got] == ["run_started"] + ["token"] * 10 + ["run_succeeded"]
        assert got[3]["data"] == {"step": "answer", "text": "piece 2 "}


async def test_an_event_too_big_to_notify_is_read_from_the_log(
    rig: JobRig, database_url: str
) -> None:
    run_id = await new_run(rig.database)
    log = RunEventLog(rig.database, run_id)
    big = {"output": "x" * 20_000}
    async with counted_database(database_url) as (database, taken):
        got: list[dict[str, Any]] = []
        listening = asyncio.Event()

        async def follow() -> None:
            async for event in events.follow(database, rig.hub, run_id, 0, running):
                got.append(event)
                listening.set()

        task = asyncio.create_task(follow())
        await log.append("run_started", {"attempt": 1})
        await asyncio.wait_for(listening.wait(), 30)
        await log.append("step_succeeded", big)
        await log.append("run_succeeded", {"result": {}})
        await asyncio.wait_for(task, 30)
    assert [e["type"] for e in got] == ["run_started", "step_succeeded", "run_succeeded"]
    assert got[1]["data"] == big
    assert 2 <= len(taken) <= 3  # catching up, then the big one (and maybe the last with it)


async def test_a_follower_of_a_run_whose_worker_died_ends_with_its_state(
    rig: JobRig, database_url: str
) -> None:
    """No last event is coming: on an idle spell the follower asks the run's state."""
    run_id = await new_run(rig.database)
    await RunEventLog(rig.database, run_id).append("run_started", {"attempt": 1})

    async def failed() -> str:
        return "failed"

    got = [e async for e in events.follow(rig.database, rig.hub, run_id, 0, failed, idle_s=0.1)]
    assert [e["type"] for e in got] == ["run_started"]


async def test_the_partial_output_is_appended_and_restarted_by_a_retry(rig: JobRig) -> None:
    run_id = await new_run(rig.database)
    log = RunEventLog(rig.database, run_id)

    async def output() -> str:
        async with rig.database.connection() as conn:
            cur = await conn.execute("SELECT output FROM runs WHERE id = %s", (run_id,))
            row = await cur.fetchone()
        assert row is not None
        text: str = row["output"]
        return text

    await log.append_output("answer", "Hello", first=True)
    await log.append_output("answer", ", world", first=False)
    assert await output() == "Hello, world"
    await log.append_output("answer", "Again", first=True)  # the step was retried
    assert await output() == "Again"
