"""The seam between the job queue and the code that runs jobs.

A *handler* is an async function registered under a job ``kind`` in the handler table the
composition root builds (``propylon.app.job_handlers``). The worker calls it with a
``JobContext`` and stores what it returns as the job's result.

Contract:

- **At least once.** A job whose worker dies (``kill -9``, lost machine) is run again after its
  lease expires, so handlers must be idempotent, or make their effect and the job's success one
  transaction with ``JobContext.complete_in(conn, result)``: then a job's effect happens exactly
  once, because a worker that lost its lease cannot commit it.
- **Failing.** Raise ``propylon.errors.JobFailed(reason)`` (or any ``PropylonError`` whose
  ``retryable`` is false) to fail the job at once with that message as its reason. Any other
  exception is retried with exponential backoff until ``max_attempts``, then fails the job with
  the exception's message as the reason.
- **Cancelling.** ``POST /v1/jobs/{id}/cancel`` makes ``cancelled()`` true and cancels the
  handler's task (``asyncio.CancelledError`` at its next ``await``). Check ``cancelled()`` or call
  ``raise_if_cancelled()`` between CPU-bound steps, which ``await`` nothing.
- **Fencing.** A write outside ``complete_in`` that must not land after this attempt lost the
  job (another attempt may be running) carries ``fence`` (the job id, worker id and attempt)
  and applies only while the job row still matches it. ``stop_reason`` tells why a handler was
  interrupted: ``cancel`` (asked by a user), ``shutdown`` (its worker is stopping and hands the
  job back to the queue) or ``lease_lost``.
- **Reaped.** A handler object may define ``async reaped(conn, job_id, state, reason)``: the
  reaper calls it, in its own transaction, for each job of that kind it requeued (``queued``) or
  ended (``failed``, ``cancelled``) because its worker was lost.
- **Periodic.** A handler object may define ``async schedule()``: every worker calls it once
  per ``jobs.reap_interval_s`` (so it must be cheap, and safe to run on several workers at
  once: claim what is due with ``FOR UPDATE SKIP LOCKED``). Source syncs use it to enqueue
  the syncs of scheduled sources.
- **Yielding.** The worker's heartbeat runs on the same event loop: a handler must not block it
  for longer than ``jobs.lease_s`` (parse page by page and ``await asyncio.sleep(0)`` between
  pages), or its lease expires and the job is run again elsewhere.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

from psycopg import AsyncConnection

StopReason = Literal["cancel", "lease_lost", "shutdown"]


class JobCancelled(Exception):
    """Raised by ``raise_if_cancelled`` once the job's cancellation was requested."""


class LeaseLost(Exception):
    """This worker no longer owns the job (its lease expired and another worker may run it)."""


class JobContext(Protocol):
    """What a handler receives: the job, a way to report progress, and cancellation."""

    job_id: str
    tenant_id: str
    kind: str
    payload: dict[str, Any]
    collection_id: str | None
    attempt: int  # 1 for the first run
    max_attempts: int  # attempt == max_attempts: the last try; failing now fails the job
    stop_reason: StopReason | None  # why the handler is being stopped, once it is

    @property
    def fence(self) -> Mapping[str, Any]:
        """``{"id", "worker_id", "attempt"}``: matches the job row only while this attempt owns
        it (see the module docstring)."""
        ...

    async def progress(
        self,
        *,
        stage: str,
        fraction: float | None = None,
        message: str | None = None,
        counters: dict[str, int] | None = None,
    ) -> None:
        """Record the stage and progress (persisted for polling, published to followers).

        A new ``stage`` is written and published at once, with its timestamp; updates within
        one stage are coalesced to a few per second. ``fraction`` is 0..1 of the stage (the
        ETA is derived from it); ``counters`` are small named figures (``pages``, ``chunks``).
        Messages are truncated to 500 characters: ids and figures, not content.
        """
        ...

    def cancelled(self) -> bool:
        """True once cancellation of this job was requested."""
        ...

    async def raise_if_cancelled(self) -> None:
        """Raise ``JobCancelled`` if cancellation was requested (cheap; call between steps)."""
        ...

    async def complete_in(
        self, conn: AsyncConnection[Any], result: dict[str, Any] | None = None
    ) -> None:
        """Mark the job succeeded inside the caller's transaction on ``conn``.

        Raises ``LeaseLost`` when this attempt no longer owns the job, so the transaction rolls
        back and the effect is not committed twice. After it commits, the handler's return
        value is ignored.
        """
        ...


Handler = Callable[[JobContext], Awaitable[dict[str, Any] | None]]
"""Runs one job; returns its result (a small JSON object) or ``None``."""

Handlers = Mapping[str, Handler]
"""The handler table: job kind -> handler."""
