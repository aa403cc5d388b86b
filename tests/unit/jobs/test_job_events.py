"""Job events stay small enough for NOTIFY, and the worker's policies are what the docs say."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from propylon.app import runs_in_process_worker
from propylon.jobs.context import RunningJob, _eta
from propylon.jobs.events import MAX_NOTIFY_BYTES, encode, job_event
from propylon.jobs.view import JobView
from propylon.jobs.worker import Worker
from propylon.settings import JobsSettings, load_settings

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def view(**changes: object) -> JobView:
    fields: dict[str, object] = {
        "id": "6f1c0d1e-0000-4000-8000-000000000001",
        "tenant_id": "t",
        "kind": "ingest",
        "collection_id": "c",
        "payload": {"document_id": "d"},
        "state": "running",
        "stage": "parsing",
        "reason": None,
        "attempts": 1,
        "max_attempts": 3,
        "cancel_requested": False,
        "fraction": 0.5,
        "message": "page 10 of 20",
        "counters": {"pages": 10},
        "eta_s": 1.0,
        "stages": {"queued": NOW.isoformat()},
        "result": None,
        "seq": 4,
        "created_at": NOW,
        "started_at": NOW,
        "finished_at": None,
        "updated_at": NOW,
    }
    fields.update(changes)
    return JobView(**fields)  # type: ignore[arg-type]


def test_an_event_carries_ids_and_figures_not_the_payload() -> None:
    event = job_event("progress", view())
    assert event["job_id"] and event["seq"] == 4
    assert event["progress"] == {
        "fraction": 0.5,
        "message": "page 10 of 20",
        "counters": {"pages": 10},
        "eta_s": 1.0,
    }
    assert "payload" not in event and "result" not in event


def test_a_notify_payload_stays_under_8000_bytes_whatever_the_handler_reports() -> None:
    huge = view(
        message="é" * 5000,
        reason="x" * 50_000,
        counters={f"counter_{i:03d}_" + "n" * 30: i for i in range(400)},
    )
    text = encode(job_event("progress", huge))
    assert len(text.encode()) <= MAX_NOTIFY_BYTES


def test_eta_assumes_the_pace_so_far_holds() -> None:
    assert _eta(10.0, 0.25) == 30.0
    assert _eta(10.0, 1.0) == 0.0
    assert _eta(10.0, None) is None
    assert _eta(10.0, 0.0) is None


def test_backoff_doubles_from_the_base_and_is_capped() -> None:
    settings = JobsSettings(retry_base_s=2.0, retry_max_s=10.0)
    worker = Worker(None, None, {}, settings)  # type: ignore[arg-type]
    for attempt, full in ((1, 2.0), (2, 4.0), (3, 8.0), (4, 10.0), (9, 10.0)):
        delay = worker.backoff(attempt)
        assert full * 0.75 <= delay <= full


def test_a_heartbeat_must_be_shorter_than_the_lease() -> None:
    with pytest.raises(ValidationError, match="heartbeat_s must be shorter"):
        JobsSettings(lease_s=5, heartbeat_s=5)


def test_serve_runs_a_worker_by_default_only_with_the_embedded_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("DATABASE_URL", "PROPYLON_DATABASE_URL", "PROPYLON_JOBS__IN_PROCESS_WORKER"):
        monkeypatch.delenv(name, raising=False)
    embedded = load_settings(None, data_dir=tmp_path)
    external = load_settings(None, database_url="postgresql://db/propylon")
    assert runs_in_process_worker(embedded)
    assert not runs_in_process_worker(external)
    external.jobs.in_process_worker = True
    assert runs_in_process_worker(external)


class CountingDatabase:
    """Stands in for the pool: counts the transactions that write progress."""

    def __init__(self) -> None:
        self.writes = 0

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        self.writes += 1
        yield OneRow()


class OneRow:
    async def execute(self, *_: Any) -> Any:
        return self

    async def fetchall(self) -> list[Any]:
        return [dataclasses.asdict(view())]


async def test_progress_within_a_stage_is_coalesced_but_a_new_stage_is_written_at_once() -> None:
    now = [100.0]
    database = CountingDatabase()
    ctx = RunningJob(
        view(),
        database,  # type: ignore[arg-type]
        worker_id="w",
        progress_interval_s=0.5,
        clock=lambda: now[0],
    )
    await ctx.progress(stage="parsing", fraction=0.1)
    await ctx.progress(stage="parsing", fraction=0.2)  # at once, same stage: coalesced
    assert database.writes == 1
    now[0] += 0.6
    await ctx.progress(stage="parsing", fraction=0.3)
    await ctx.progress(stage="embedding", fraction=0.0)  # a new stage: written at once
    await ctx.progress(stage="embedding", fraction=1.0)  # a stage's end: written at once
    assert database.writes == 4
