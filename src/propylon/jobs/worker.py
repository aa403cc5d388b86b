"""The worker: claims due jobs, runs their handlers, renews their leases, reaps lost ones.

One ``Worker`` runs up to ``jobs.concurrency`` jobs at once on the event loop of its process
(``propylon worker``, or inside ``propylon serve``). Any number of workers, on any number of
machines, share one database: claims use ``FOR UPDATE SKIP LOCKED``, so two workers never
claim one job, and every write about a job is fenced by (worker id, attempt), so a worker
that lost a job cannot touch it again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import socket
import time
import uuid
from typing import Any, Protocol

from opentelemetry.trace import Tracer
from psycopg.types.json import Jsonb

from propylon.background import stop_tasks, wait_event
from propylon.db.database import Database
from propylon.errors import PropylonError
from propylon.jobs import store
from propylon.jobs.context import RunningJob
from propylon.jobs.handler import (
    Handler,
    Handlers,
    JobCancelled,
    LeaseLost,
    StopReason,
)
from propylon.jobs.progress import Gap, ProgressHub, Subscription
from propylon.jobs.queries import query
from propylon.jobs.view import JobView
from propylon.observe.tracing import mark_root, span
from propylon.settings import JobsSettings
from propylon.storable import escape_unstorable, storable_json

log = logging.getLogger(__name__)


class JobOutcomes(Protocol):
    """Where a worker reports each job attempt it ends (e.g. Prometheus metrics)."""

    def job_finished(self, kind: str, outcome: str, seconds: float) -> None: ...


_CLAIM_LOCK = 0x70726F71  # "proq": claims take turns while a per-tenant cap is set


class Worker:
    """Runs the jobs whose kinds it has handlers for, until told to stop."""

    def __init__(
        self,
        database: Database,
        hub: ProgressHub,
        handlers: Handlers,
        settings: JobsSettings,
        *,
        worker_id: str | None = None,
        outcomes: JobOutcomes | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._tracer = tracer  # None: tracing is off
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._outcomes = outcomes
        self._database = database
        self._hub = hub
        self._handlers = dict(handlers)
        self._settings = settings
        self._running: dict[str, tuple[RunningJob, asyncio.Task[Any]]] = {}
        self._runs: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._held_back = False  # due jobs were left unclaimed (tenant caps, or being claimed)

    @property
    def running(self) -> int:
        return len(self._running)

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and run jobs until ``stop`` is set; then give running jobs
        ``jobs.shutdown_grace_s`` to finish and hand the others back to the queue."""
        with self._hub.subscribe("all") as events:
            helpers = [
                asyncio.create_task(self._heartbeats(), name="jobs-heartbeat"),
                asyncio.create_task(self._reaper(), name="jobs-reaper"),
                asyncio.create_task(self._watch(events), name="jobs-watch"),
                asyncio.create_task(self._wake_on(stop), name="jobs-stop"),
            ]
            try:
                log.info("worker started", extra={"worker": self.id, "kinds": list(self._handlers)})
                await self._claim_loop(stop)
                await self._drain()
            finally:
                await stop_tasks(*helpers)
                log.info("worker stopped", extra={"worker": self.id})

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _claim_loop(self, stop: asyncio.Event) -> None:
        kinds = list(self._handlers)
        while not stop.is_set():
            self._wake.clear()
            wait_s = self._settings.poll_interval_s
            try:
                while len(self._running) < self._settings.concurrency and not stop.is_set():
                    view = await self._claim(kinds)
                    if view is None:
                        due_in = await self._next_due(kinds)
                        # Due but not claimable (capped, or being claimed): a job ending
                        # anywhere wakes this loop (``_watch``), rather than polling.
                        self._held_back = due_in <= 0
                        if not self._held_back:
                            wait_s = min(wait_s, due_in)
                        break
                    self._start(view)
            except Exception as exc:  # the database is away: keep the worker, try again
                log.warning("claiming jobs failed", extra={"error": str(exc)})
            await wait_event(self._wake, max(wait_s, 0.01))

    async def _claim(self, kinds: list[str]) -> JobView | None:
        cap = self._settings.tenant_concurrency
        params = {
            "worker_id": self.id,
            "lease_s": self._settings.lease_s,
            "kinds": kinds,
            "tenant_cap": cap,
        }
        async with self._database.connection() as conn:
            if cap is not None:
                await conn.execute(query("claim_lock"), {"lock": _CLAIM_LOCK})
            return await store.change_one(conn, "claim", params, "state")

    async def _next_due(self, kinds: list[str]) -> float:
        async with self._database.connection() as conn:
            cur = await conn.execute(query("next_due"), {"kinds": kinds})
            row = await cur.fetchone()
        wait = row["wait_s"] if row else None
        return self._settings.poll_interval_s if wait is None else max(0.0, float(wait))

    def _start(self, view: JobView) -> None:
        ctx = RunningJob(
            view,
            self._database,
            worker_id=self.id,
            progress_interval_s=self._settings.progress_interval_s,
        )
        handler_task = asyncio.create_task(
            _call(self._handlers[view.kind], ctx, self._tracer), name=f"job-{view.id}"
        )
        self._running[view.id] = (ctx, handler_task)
        run = asyncio.create_task(self._run(ctx, handler_task))
        self._runs.add(run)
        run.add_done_callback(self._runs.discard)
        log.info(
            "job started", extra={"job_id": view.id, "kind": view.kind, "attempt": ctx.attempt}
        )

    async def _run(self, ctx: RunningJob, handler_task: asyncio.Task[Any]) -> None:
        started = time.monotonic()
        outcome: str | None = None
        try:
            try:
                result = await handler_task
            except (asyncio.CancelledError, JobCancelled) as exc:
                if ctx.stop_reason is not None:
                    await self._stopped(ctx)
                    outcome = {"cancel": "cancelled", "shutdown": "released"}.get(
                        ctx.stop_reason, "lease_lost"
                    )
                elif not handler_task.done():
                    raise  # this task itself was cancelled: not ours to record
                else:  # the handler cancelled itself, unasked: an ordinary failure
                    error = RuntimeError(f"the handler was cancelled ({exc!r})")
                    outcome = await self._failed(ctx, error)
            except LeaseLost:
                log.warning("job lost its lease", extra={"job_id": ctx.job_id})
                outcome = "lease_lost"
            except Exception as exc:
                outcome = await self._failed(ctx, exc)
            else:
                await self._succeeded(ctx, result)
                outcome = "succeeded"
        except Exception as exc:  # recording the outcome failed; the reaper will requeue it
            log.warning(
                "recording a job outcome failed", extra={"job_id": ctx.job_id, "error": str(exc)}
            )
        finally:
            self._running.pop(ctx.job_id, None)
            self._wake.set()
            if outcome is not None and self._outcomes is not None:
                self._outcomes.job_finished(ctx.kind, outcome, time.monotonic() - started)

    async def _succeeded(self, ctx: RunningJob, result: Any) -> None:
        if result is not None and not isinstance(result, dict):
            await self._failed(ctx, TypeError("the handler's result is not a JSON object"))
            return
        params = {**ctx.fence, "result": None if result is None else Jsonb(storable_json(result))}
        async with self._database.connection() as conn:
            # No row: the handler already committed success with complete_in, or lost the job.
            await store.change_one(conn, "succeed", params, "state")
        log.info("job succeeded", extra={"job_id": ctx.job_id})

    async def _failed(self, ctx: RunningJob, exc: BaseException) -> str:
        """Record a failure: final ("failed") or to be retried ("retry")."""
        final = isinstance(exc, PropylonError) and not exc.retryable
        reason = exc.message if isinstance(exc, PropylonError) else f"{type(exc).__name__}: {exc}"
        reason = escape_unstorable(reason)  # a message quoting a NUL must not fail the write
        async with self._database.connection() as conn:
            if final or ctx.attempt >= ctx.max_attempts:
                await store.change_one(conn, "fail", {**ctx.fence, "reason": reason}, "state")
                log.warning("job failed", extra={"job_id": ctx.job_id, "reason": reason})
                return "failed"
            delay = self.backoff(ctx.attempt)
            params = {**ctx.fence, "reason": reason, "delay_s": delay}
            await store.change_one(conn, "retry", params, "state")
            log.info("job will retry", extra={"job_id": ctx.job_id, "delay_s": delay})
            return "retry"

    def backoff(self, attempt: int) -> float:
        """Seconds before the next attempt: doubling from ``retry_base_s``, capped, jittered."""
        base = self._settings.retry_base_s * 2.0 ** (attempt - 1)
        return min(self._settings.retry_max_s, base) * random.uniform(0.75, 1.0)

    async def _stopped(self, ctx: RunningJob) -> None:
        name = {"cancel": "mark_cancelled", "shutdown": "release"}.get(ctx.stop_reason or "")
        if name is None:
            return  # lease lost: the job belongs to whoever runs it next
        async with self._database.connection() as conn:
            await store.change_one(conn, name, ctx.fence, "state")
        log.info("job stopped", extra={"job_id": ctx.job_id, "why": ctx.stop_reason})

    def _interrupt(self, job_id: str, reason: StopReason) -> None:
        entry = self._running.get(job_id)
        if entry is not None:
            ctx, handler_task = entry
            ctx.stop(reason)
            handler_task.cancel()

    async def _heartbeats(self) -> None:
        last_ok = time.monotonic()
        while True:
            await asyncio.sleep(self._settings.heartbeat_s)
            beating = {job_id: ctx.attempt for job_id, (ctx, _) in self._running.items()}
            if not beating:
                last_ok = time.monotonic()
                continue
            params = {
                "ids": [uuid.UUID(i) for i in beating],
                "worker_id": self.id,
                "lease_s": self._settings.lease_s,
            }
            try:
                async with self._database.connection() as conn:
                    cur = await conn.execute(query("heartbeat"), params)
                    owned = {str(r["id"]): r for r in await cur.fetchall()}
                last_ok = time.monotonic()
            except Exception as exc:
                log.warning("heartbeat failed", extra={"error": str(exc)})
                if time.monotonic() - last_ok > self._settings.lease_s:
                    for job_id in beating:  # our leases have run out: others may run these
                        self._interrupt(job_id, "lease_lost")
                continue
            for job_id, attempt in beating.items():
                row = owned.get(job_id)
                if row is None or row["attempts"] != attempt:
                    self._interrupt(job_id, "lease_lost")
                elif row["cancel_requested"]:
                    self._interrupt(job_id, "cancel")

    async def _reaper(self) -> None:
        while True:
            try:
                async with self._database.connection() as conn:
                    reaped = await store.change(conn, "reap", {}, "state")
                    for view in reaped:  # in the same transaction: nothing is left behind
                        hook = getattr(self._handlers.get(view.kind), "reaped", None)
                        if hook is not None:
                            await hook(conn, view.id, view.state, view.reason)
                for view in reaped:
                    log.warning(
                        "requeued a job whose worker was lost",
                        extra={"job_id": view.id, "state": view.state, "attempts": view.attempts},
                    )
            except Exception as exc:
                log.warning("reaping jobs failed", extra={"error": str(exc)})
            await self._periodic()
            await asyncio.sleep(self._settings.reap_interval_s)

    async def _periodic(self) -> None:
        """Each handler's ``schedule()`` hook (scheduled source syncs), one failing alone."""
        for kind, handler in self._handlers.items():
            hook = getattr(handler, "schedule", None)
            if hook is None:
                continue
            try:
                await hook()
            except Exception as exc:
                log.warning("a periodic hook failed", extra={"kind": kind, "error": str(exc)})

    async def _watch(self, events: Subscription) -> None:
        async for item in events:
            if isinstance(item, Gap):
                self._wake.set()
                continue
            if item.get("state") == "queued" or (
                self._held_back and item.get("state") in ("succeeded", "failed", "cancelled")
            ):
                self._wake.set()
            if item.get("cancel_requested") and item.get("state") == "running":
                self._interrupt(str(item.get("job_id")), "cancel")

    async def _drain(self) -> None:
        if not self._runs:
            return
        runs = set(self._runs)
        _, pending = await asyncio.wait(runs, timeout=self._settings.shutdown_grace_s)
        if pending:
            for job_id in list(self._running):
                self._interrupt(job_id, "shutdown")
            await asyncio.wait(pending, timeout=5.0)


async def _call(handler: Handler, ctx: RunningJob, tracer: Tracer | None) -> dict[str, Any] | None:
    """The handler inside the job's span: the root of its trace (``job:<id>``), under which
    its model and embedding calls hang."""
    with span(
        tracer,
        f"job {ctx.kind}",
        lambda: {"propylon.job.kind": ctx.kind, "propylon.job.attempt": ctx.attempt},
    ) as root:
        mark_root(root, ctx.tenant_id, f"job:{ctx.job_id}")
        return await handler(ctx)
