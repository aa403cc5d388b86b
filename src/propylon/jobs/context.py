"""``RunningJob``: the ``JobContext`` a worker hands to a handler for one attempt."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from propylon.db.database import Database
from propylon.jobs import store
from propylon.jobs.handler import JobCancelled, LeaseLost, StopReason
from propylon.jobs.view import JobView
from propylon.storable import escape_unstorable, storable_json

MAX_COUNTERS = 32
MAX_NAME_CHARS = 40


class RunningJob:
    """One attempt of one job, owned by one worker (fenced by worker id and attempt)."""

    def __init__(
        self,
        view: JobView,
        database: Database,
        *,
        worker_id: str,
        progress_interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.job_id = view.id
        self.tenant_id = view.tenant_id
        self.kind = view.kind
        self.collection_id = view.collection_id
        self.payload = view.payload
        self.max_attempts = view.max_attempts
        self.attempt = view.attempts
        self.stop_reason: StopReason | None = None
        self._database = database
        self._worker_id = worker_id
        self._interval = progress_interval_s
        self._clock = clock
        self._stage: str | None = None
        self._stage_started = clock()
        self._last_write = float("-inf")

    @property
    def fence(self) -> dict[str, Any]:
        """The parameters that make a write apply only while this attempt owns the job."""
        return {"id": self.job_id, "worker_id": self._worker_id, "attempt": self.attempt}

    def stop(self, reason: StopReason) -> None:
        """Ask the handler to stop; the first reason given wins."""
        if self.stop_reason is None:
            self.stop_reason = reason

    async def progress(
        self,
        *,
        stage: str,
        fraction: float | None = None,
        message: str | None = None,
        counters: dict[str, int] | None = None,
    ) -> None:
        now = self._clock()
        new_stage = stage != self._stage
        if new_stage:
            self._stage, self._stage_started = stage, now
        elif now - self._last_write < self._interval and (fraction is None or fraction < 1):
            return  # coalesced: a later update carries newer figures
        self._last_write = now
        if fraction is not None:
            fraction = min(1.0, max(0.0, float(fraction)))
        params = {
            **self.fence,
            "stage": stage[:MAX_NAME_CHARS],
            "fraction": fraction,
            "message": escape_unstorable(message[:500]) if message else None,
            "counters": Jsonb(_clean_counters(counters)),
            "eta_s": _eta(now - self._stage_started, fraction),
        }
        async with self._database.connection() as conn:
            view = await store.change_one(
                conn, "progress", params, "stage" if new_stage else "progress"
            )
        if view is None:
            self.stop("lease_lost")
            raise LeaseLost(f"job {self.job_id} attempt {self.attempt} is no longer ours")

    def cancelled(self) -> bool:
        return self.stop_reason is not None

    async def raise_if_cancelled(self) -> None:
        if self.stop_reason is not None:
            raise JobCancelled(f"job {self.job_id}: {self.stop_reason}")

    async def complete_in(
        self, conn: AsyncConnection[Any], result: dict[str, Any] | None = None
    ) -> None:
        view = await store.change_one(
            conn,
            "succeed",
            {**self.fence, "result": None if result is None else Jsonb(storable_json(result))},
            "state",
        )
        if view is None:
            raise LeaseLost(f"job {self.job_id} attempt {self.attempt} is no longer ours")


def _clean_counters(counters: dict[str, int] | None) -> dict[str, int]:
    items = list((counters or {}).items())[:MAX_COUNTERS]
    return {str(k)[:MAX_NAME_CHARS]: int(v) for k, v in items}


def _eta(elapsed_s: float, fraction: float | None) -> float | None:
    """Seconds left in the stage, assuming the pace so far holds."""
    if fraction is None or fraction <= 0:
        return None
    return round(elapsed_s * (1 - fraction) / fraction, 3)
