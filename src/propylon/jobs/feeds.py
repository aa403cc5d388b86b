"""The live feeds clients follow: one job (``WS /v1/jobs/{id}/events``) or a collection's jobs.

A feed subscribes first, then reads a snapshot, then forwards only events newer (by ``seq``)
than what it has sent: nothing is missed, nothing repeated, and events stay in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from propylon.jobs.events import public, snapshot
from propylon.jobs.progress import Event, Gap, ProgressHub
from propylon.jobs.queue import JobQueue, job_topic
from propylon.jobs.view import TERMINAL_STATES, JobView


class JobFeeds:
    """The live feeds: one job (``WS /v1/jobs/{id}/events``) or one collection's jobs."""

    def __init__(self, queue: JobQueue, hub: ProgressHub) -> None:
        self._queue = queue
        self._hub = hub

    async def follow_job(self, tenant_id: str, job_id: str) -> AsyncIterator[Event]:
        """A snapshot, then the job's events in order; ends after its terminal event."""
        with self._hub.subscribe(job_topic(job_id)) as events:
            view = await self._queue.get(tenant_id, job_id)
            yield snapshot(view)
            sent = view.seq
            while not view.terminal:
                item = await events.get()
                if isinstance(item, Gap):
                    view = await self._queue.get(tenant_id, job_id)
                    if view.seq > sent:
                        sent = view.seq
                        yield snapshot(view)
                    continue
                if int(item["seq"]) <= sent:
                    continue
                sent = int(item["seq"])
                yield public(item)
                if item["state"] in TERMINAL_STATES:
                    return

    async def follow_collection(self, tenant_id: str, collection_id: str) -> AsyncIterator[Event]:
        """Snapshots of the collection's recent jobs, then every event of its jobs; never ends."""
        with self._hub.subscribe(f"collection:{tenant_id}:{collection_id}") as events:
            sent: dict[str, int] = {}
            for view in await self._recent(tenant_id, collection_id):
                sent[view.id] = view.seq
                yield snapshot(view)
            async for item in events:
                if isinstance(item, Gap):
                    for view in await self._recent(tenant_id, collection_id):
                        if view.seq > sent.get(view.id, -1):
                            sent[view.id] = view.seq
                            yield snapshot(view)
                    continue
                job_id, seq = str(item["job_id"]), int(item["seq"])
                if seq <= sent.get(job_id, -1):
                    continue
                sent[job_id] = seq
                yield public(item)

    async def _recent(self, tenant_id: str, collection_id: str) -> list[JobView]:
        views = await self._queue.list_for_collection(tenant_id, collection_id)
        return sorted(views, key=lambda v: v.created_at)
