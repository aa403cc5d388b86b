"""Job handlers for tests: they sleep, fail, report stages, and record what they did in tables
of the test's database, so a test can count executions across processes."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from propylon.db.database import Database
from propylon.errors import JobFailed
from propylon.jobs.handler import Handler, JobContext

RECORD_TABLES = """
CREATE TABLE IF NOT EXISTS test_job_runs (
    job_id uuid NOT NULL, attempt integer NOT NULL, at timestamptz NOT NULL DEFAULT now(),
    outcome text NOT NULL DEFAULT 'started'
);
CREATE TABLE IF NOT EXISTS test_job_completions (
    job_id uuid NOT NULL, attempt integer NOT NULL, at timestamptz NOT NULL DEFAULT now()
);
"""


@dataclass
class Gates:
    """In-process steering of the ``steps`` handler: the test releases one stage at a time."""

    opened: dict[str, asyncio.Event] = field(default_factory=dict)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    cleaned_up: asyncio.Event = field(default_factory=asyncio.Event)

    def gate(self, name: str) -> asyncio.Event:
        return self.opened.setdefault(name, asyncio.Event())


def handlers_for_tests(database: Database, gates: Gates | None = None) -> dict[str, Handler]:
    """The table: echo, sleep (exactly-once completion), flaky, poison, give_up, steps, block."""
    gates = gates or Gates()

    async def record(ctx: JobContext, outcome: str = "started") -> None:
        async with database.connection() as conn:
            await conn.execute(
                "INSERT INTO test_job_runs (job_id, attempt, outcome) VALUES (%s, %s, %s)",
                (ctx.job_id, ctx.attempt, outcome),
            )

    async def echo(ctx: JobContext) -> dict[str, Any] | None:
        await record(ctx)
        if ctx.payload.get("quote_nul"):  # what a parser may quote from a document
            await ctx.progress(stage="quoting", message="found a\x00b")
            return {"quoted": {"text": ["a\x00b\udc80"]}, "attempt": ctx.attempt}
        return {"echo": ctx.payload, "attempt": ctx.attempt}

    async def sleep(ctx: JobContext) -> dict[str, Any] | None:
        """Sleeps, then records its completion in the transaction that marks the job done."""
        await record(ctx)
        await ctx.progress(stage="sleeping", fraction=0.0)
        await asyncio.sleep(float(ctx.payload.get("seconds", 0.1)))
        async with database.connection() as conn:
            await conn.execute(
                "INSERT INTO test_job_completions (job_id, attempt) VALUES (%s, %s)",
                (ctx.job_id, ctx.attempt),
            )
            await ctx.complete_in(conn, {"slept": ctx.payload.get("seconds", 0.1)})
        return None

    async def flaky(ctx: JobContext) -> dict[str, Any] | None:
        """Fails its first ``failures`` attempts with an ordinary (retryable) exception."""
        await record(ctx)
        if ctx.attempt <= int(ctx.payload.get("failures", 1)):
            raise ConnectionError(f"upstream hiccup on attempt {ctx.attempt}")
        return {"attempt": ctx.attempt}

    async def poison(ctx: JobContext) -> dict[str, Any] | None:
        await record(ctx)
        if ctx.payload.get("quote_nul"):
            raise ValueError("corrupt text 'a\x00b' at byte 1234")
        raise ValueError("corrupt xref table at byte 1234")

    async def give_up(ctx: JobContext) -> dict[str, Any] | None:
        await record(ctx)
        raise JobFailed("the document has no extractable text")

    async def steps(ctx: JobContext) -> dict[str, Any] | None:
        """Reports each stage in ``payload['stages']`` with progress, waiting for its gate."""
        for stage in ctx.payload["stages"]:
            await gates.gate(stage).wait()
            for done in range(1, 3):
                await ctx.progress(
                    stage=stage, fraction=done / 2, counters={"items": done}, message=f"{stage}"
                )
        if ctx.payload.get("hold"):  # the test polls the last stage before the job ends
            await gates.gate("finish").wait()
        return {"stages": ctx.payload["stages"]}

    async def block(ctx: JobContext) -> dict[str, Any] | None:
        """Runs until cancelled; records that it cleaned up."""
        await record(ctx)
        gates.started.set()
        try:
            await ctx.progress(stage="working", fraction=0.1)
            await asyncio.Event().wait()  # parked until the job is cancelled
        finally:
            gates.cleaned_up.set()
        return None

    table: dict[str, Callable[[JobContext], Awaitable[dict[str, Any] | None]]] = {
        "echo": echo,
        "sleep": sleep,
        "flaky": flaky,
        "poison": poison,
        "give_up": give_up,
        "steps": steps,
        "block": block,
    }
    return table
