"""A job as clients see it: state, stage, attempts, progress and the time of every stage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})


@dataclass(frozen=True, slots=True)
class JobView:
    """One row of ``jobs``. ``to_dict`` is what clients see (``GET /v1/jobs/{id}``, the event
    feeds); the payload is the handler's input and is not shown."""

    id: str
    tenant_id: str
    kind: str
    collection_id: str | None
    payload: dict[str, Any]
    state: JobState
    stage: str | None
    reason: str | None
    attempts: int
    max_attempts: int
    cancel_requested: bool
    fraction: float | None
    message: str | None
    counters: dict[str, int]
    eta_s: float | None
    stages: dict[str, str]
    result: dict[str, Any] | None
    seq: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> JobView:
        return cls(
            id=str(row["id"]),
            tenant_id=row["tenant_id"],
            kind=row["kind"],
            collection_id=row["collection_id"],
            payload=row["payload"],
            state=row["state"],
            stage=row["stage"],
            reason=row["reason"],
            attempts=row["attempts"],
            max_attempts=row["max_attempts"],
            cancel_requested=row["cancel_requested"],
            fraction=row["fraction"],
            message=row["message"],
            counters=row["counters"] or {},
            eta_s=row["eta_s"],
            stages=row["stages"] or {},
            result=row["result"],
            seq=row["seq"],
            created_at=row["created_at"],
            started_at=row["started_at"],
            finished_at=row["finished_at"],
            updated_at=row["updated_at"],
        )

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    def progress(self) -> dict[str, Any]:
        return {
            "fraction": self.fraction,
            "message": self.message,
            "counters": self.counters,
            "eta_s": self.eta_s,
        }

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of ``GET /v1/jobs/{id}``."""
        return {
            "id": self.id,
            "object": "job",
            "kind": self.kind,
            "collection_id": self.collection_id,
            "state": self.state,
            "stage": self.stage,
            "reason": self.reason,
            "attempts": self.attempts,
            "max_attempts": self.max_attempts,
            "cancel_requested": self.cancel_requested,
            "progress": self.progress(),
            "stages": self.stages,
            "result": self.result,
            "seq": self.seq,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
            "updated_at": _iso(self.updated_at),
        }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
