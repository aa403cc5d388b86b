"""Job events: what a change to a job publishes.

An event carries ids and figures only (NOTIFY payloads must stay under 8,000 bytes): the job
and collection ids, ``seq`` (which orders a job's events), state, stage, attempts, progress,
and a reason cut to 1,000 characters.
"""

from __future__ import annotations

from typing import Literal

import orjson

from propylon.jobs.progress import Event
from propylon.jobs.view import JobView

EventType = Literal["state", "stage", "progress", "cancel_requested"]

MAX_NOTIFY_BYTES = 7900  # PostgreSQL refuses payloads of 8,000 bytes and more
MAX_REASON_CHARS = 1000
MAX_MESSAGE_CHARS = 500


def job_event(event_type: EventType, view: JobView) -> Event:
    """The event published when ``view`` is the job's new state."""
    return {
        "type": event_type,
        "job_id": view.id,
        "tenant_id": view.tenant_id,
        "collection_id": view.collection_id,
        "seq": view.seq,
        "state": view.state,
        "stage": view.stage,
        "attempts": view.attempts,
        "cancel_requested": view.cancel_requested,
        "reason": _cut(view.reason, MAX_REASON_CHARS),
        "progress": {**view.progress(), "message": _cut(view.message, MAX_MESSAGE_CHARS)},
    }


def encode(event: Event) -> str:
    """The NOTIFY payload; drops the message, then the counters, if it would be too large."""
    text = orjson.dumps(event).decode()
    if len(text.encode()) <= MAX_NOTIFY_BYTES:
        return text
    slim = {**event, "progress": {**event["progress"], "message": None, "counters": {}}}
    slim["reason"] = _cut(event.get("reason"), 200)
    return orjson.dumps(slim).decode()


def public(event: Event) -> Event:
    """An event as a client receives it."""
    return {k: v for k, v in event.items() if k != "tenant_id"}


def snapshot(view: JobView) -> Event:
    return {"type": "snapshot", "job": view.to_dict()}


def _cut(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[: limit - 1] + "…"
