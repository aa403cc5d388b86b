"""Live job events: ONE listening connection per process, fanned out to subscribers.

Every change to a job (queue.py, worker.py) sends ``NOTIFY propylon_jobs`` with a small JSON
event in the same transaction, so the event is delivered exactly when the change is visible.
``ProgressHub`` keeps one dedicated ``LISTEN`` connection (not a pool connection) and hands each
event to the subscribers of its topics: ``job:<id>``, ``collection:<tenant>:<id>`` and ``all``
(the worker's wake-ups). Run events (``runs/events.py``, with a ``run_id``) go to
``run:<id>`` only: they wake no worker. Subscriber queues are bounded: a slow subscriber, or a lost
connection, receives ``GAP`` instead of the events it missed and re-reads the job's state.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any, Final

import orjson
from psycopg import AsyncConnection

from propylon.background import stop_tasks

log = logging.getLogger(__name__)

CHANNEL: Final = "propylon_jobs"


class Gap:
    """Events may have been missed (slow subscriber, reconnect): re-read the state."""

    def __repr__(self) -> str:
        return "GAP"


GAP: Final = Gap()

Event = dict[str, Any]


def run_topic(run_id: str) -> str:
    """The event topic of a run, its id normalised: a client's feed of ``/v1/runs/{ID}`` in
    capitals, or without hyphens, hears the same events as the canonical spelling."""
    try:
        return f"run:{uuid.UUID(run_id)}"
    except ValueError:
        return f"run:{run_id}"


def topics_of(event: Event) -> list[str]:
    if "run_id" in event:
        return [run_topic(str(event["run_id"]))]
    topics = ["all", f"job:{event.get('job_id')}"]
    if event.get("collection_id"):
        topics.append(f"collection:{event.get('tenant_id')}:{event['collection_id']}")
    return topics


class Subscription:
    """A bounded queue of the events of one topic. Iterate it; leave with the hub's ``with``."""

    def __init__(self, topic: str, maxsize: int) -> None:
        self.topic = topic
        self._queue: asyncio.Queue[Event | Gap] = asyncio.Queue(maxsize)

    def push(self, item: Event | Gap) -> None:
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            # Too slow to keep up: drop what is queued and tell the reader to resynchronise.
            while not self._queue.empty():
                self._queue.get_nowait()
            self._queue.put_nowait(GAP)

    async def get(self) -> Event | Gap:
        return await self._queue.get()

    def __aiter__(self) -> AsyncIterator[Event | Gap]:
        return self

    async def __anext__(self) -> Event | Gap:
        return await self._queue.get()


class ProgressHub:
    """Listens on the job channel once per process and fans events out by topic."""

    def __init__(self, url: str, *, reconnect_s: float = 1.0, queue_size: int = 1000) -> None:
        self._url = url
        self._reconnect_s = reconnect_s
        self._queue_size = queue_size
        self._subscribers: dict[str, set[Subscription]] = {}
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self, timeout: float = 10.0) -> None:
        """Start listening; return once the first ``LISTEN`` is in place."""
        self._task = asyncio.create_task(self._listen(), name="propylon-job-events")
        await asyncio.wait_for(self._ready.wait(), timeout)

    async def close(self) -> None:
        await stop_tasks(self._task)
        self._task = None

    @contextmanager
    def subscribe(self, topic: str) -> Iterator[Subscription]:
        """Receive the events of ``topic`` while inside the ``with`` block."""
        subscription = Subscription(topic, self._queue_size)
        self._subscribers.setdefault(topic, set()).add(subscription)
        try:
            yield subscription
        finally:
            group = self._subscribers.get(topic)
            if group is not None:
                group.discard(subscription)
                if not group:
                    del self._subscribers[topic]

    def dispatch(self, event: Event) -> None:
        for topic in topics_of(event):
            for subscription in self._subscribers.get(topic, ()):
                subscription.push(event)

    def _broadcast_gap(self) -> None:
        for group in self._subscribers.values():
            for subscription in group:
                subscription.push(GAP)

    async def _listen(self) -> None:
        connected_before = False
        while True:
            try:
                conn = await AsyncConnection.connect(
                    self._url, autocommit=True, keepalives=1, keepalives_idle=30
                )
                async with conn:
                    await conn.execute(f"LISTEN {CHANNEL}")
                    if connected_before:
                        log.info("job events: listening again")
                        self._broadcast_gap()
                    connected_before = True
                    self._ready.set()
                    async for notification in conn.notifies():
                        try:
                            event = orjson.loads(notification.payload)
                        except orjson.JSONDecodeError:
                            continue
                        if isinstance(event, dict):
                            self.dispatch(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("job events: listening connection lost", extra={"error": str(exc)})
            self._ready.clear()
            await asyncio.sleep(self._reconnect_s)
