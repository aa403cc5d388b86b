"""Finished OpenTelemetry spans kept in PostgreSQL, for the console's waterfall.

``SpanStore`` is a span processor: the SDK hands it each span as it ends (``on_end``), and it
queues the span in a ``CopyBuffer`` (bounded: when the database is slow or down, spans wait
up to ``buffer_size`` and later ones are dropped and counted, never blocking the request that
ended them). Rendering to rows happens in the writer task, not on the request path.

A trace belongs to a tenant through its root span(s): those carry ``propylon.tenant_id`` and
``propylon.subject`` (``request:<id>``, ``run:<id>``, ``job:<id>``), set with ``mark_root``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from propylon.db.database import Database
from propylon.observe.copy_buffer import CopyBuffer
from propylon.observe.stored_tracer import StoredSpan
from propylon.observe.tracing import SUBJECT, TENANT
from propylon.storable import escape_row, jsonb_text

log = logging.getLogger(__name__)

COLUMNS = (
    "trace_id",
    "span_id",
    "parent_span_id",
    "tenant_id",
    "subject",
    "name",
    "kind",
    "started_at",
    "duration_ms",
    "status",
    "status_message",
    "attributes",
    "events",
)


class SpanStore(SpanProcessor):
    """Queues each finished span for writing to the ``spans`` table (``start`` / ``stop``)."""

    def __init__(
        self,
        database: Database,
        *,
        buffer_size: int = 10_000,
        batch_size: int = 500,
        flush_interval_s: float = 1.0,
    ) -> None:
        self.buffer: CopyBuffer[ReadableSpan] = CopyBuffer(
            database,
            "spans",
            COLUMNS,
            span_row,
            names=("trace_id", "span_id", "subject"),
            log=log,
            buffer_size=buffer_size,
            batch_size=batch_size,
            flush_interval_s=flush_interval_s,
        )
        self._open = True

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        return None

    def on_end(self, span: ReadableSpan) -> None:
        if self._open:
            self.buffer.submit(span)

    def shutdown(self) -> None:
        self._open = False  # the provider may outlive this store (a provider handed in)

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True  # the writer task flushes; ``stop`` drains

    async def start(self) -> None:
        await self.buffer.start()

    async def stop(self, timeout: float = 5.0) -> None:
        self._open = False
        await self.buffer.stop(timeout)


def span_row(span: ReadableSpan | StoredSpan) -> tuple[Any, ...]:
    """A finished span (the SDK's or ``StoredTracer``'s) as a row of ``spans``, with what
    PostgreSQL cannot store (a NUL, a lone surrogate: from a prompt quoted in an exception's
    message, a model's name…) escaped as in the request log, so the span is kept and does not
    cost its batch a retry."""
    if isinstance(span, StoredSpan):
        trace_id, span_id, parent_id = span.trace_id, span.span_id, span.parent_id
    else:
        context = span.context
        if context is None:
            raise ValueError("a span without a context")
        trace_id, span_id = context.trace_id, context.span_id
        parent_id = span.parent.span_id if span.parent is not None else None
    attributes: Mapping[str, Any] = span.attributes or {}
    tenant = attributes.get(TENANT)
    started = span.start_time or 0
    ended = span.end_time or started
    events = [
        {
            "name": event.name,
            "at_ms": (event.timestamp - started) / 1e6,
            "attributes": dict(event.attributes or {}),
        }
        for event in span.events
    ]
    return escape_row(
        (
            f"{trace_id:032x}",
            f"{span_id:016x}",
            f"{parent_id:016x}" if parent_id is not None else None,
            tenant if isinstance(tenant, str) else None,
            attributes.get(SUBJECT) if isinstance(tenant, str) else None,
            span.name,
            span.kind.name.lower(),
            datetime.fromtimestamp(started / 1e9, UTC),
            (ended - started) / 1e6,
            span.status.status_code.name.lower(),
            span.status.description,
            jsonb_text(dict(attributes)),
            jsonb_text(events) if events else None,
        )
    )
