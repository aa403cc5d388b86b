"""The tracer used when the only reader of the spans is Propylon's own trace store.

With no ``OTEL_*`` exporter, no provider handed in and no global provider, every span goes to
``SpanStore`` alone (``observe.store_traces``, on by default). The OpenTelemetry SDK would
build each span through its sampler, id generator, span processors, locks and attribute
validation: about 50 µs a span here, and a proxied request makes five. ``StoredTracer`` makes
the same spans, with the same names, ids, parents, kinds, attributes, events (an exception
recorded as the SDK records it) and statuses, as small objects it hands to the store when they
end; the store renders them to rows in its writer task as it renders the SDK's. Every span is
kept (no sampling), so the console and the ``/v1`` trace APIs show what they showed.

It keeps the current span in OpenTelemetry's context, so ``trace.get_current_span()`` and
``trace.use_span`` work with its spans as with the SDK's. What it does not do: span links,
the SDK's limits (128 attributes a span: Propylon's spans carry about ten), and the
``OTEL_TRACES_SAMPLER`` / ``OTEL_*_LIMIT`` / ``OTEL_SDK_DISABLED`` variables; when one is set,
``open_tracing`` uses the SDK instead (``needs_sdk``).
"""

from __future__ import annotations

import random
import traceback
from collections.abc import Mapping, Sequence
from time import time_ns
from types import TracebackType
from typing import Any, Protocol

from opentelemetry import context as context_api
from opentelemetry import trace
from opentelemetry.trace import (
    Link,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
)
from opentelemetry.util.types import Attributes, AttributeValue

UNSET = Status(StatusCode.UNSET)
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_SDK_VARIABLES = ("OTEL_TRACES_SAMPLER", "OTEL_SPAN_", "OTEL_ATTRIBUTE_", "OTEL_EVENT_")


def needs_sdk(env: Mapping[str, str]) -> bool:
    """Whether a variable asks for what only the SDK does (sampling, limits, or no spans at
    all: ``OTEL_SDK_DISABLED``)."""
    if env.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return True
    return any(name.startswith(_SDK_VARIABLES) for name in env)


class Sink(Protocol):
    """Where ended spans go: the trace store (``SpanStore.on_end``)."""

    def on_end(self, span: Any) -> None: ...


class StoredEvent:
    """An event on a span (an exception recorded): name, time (ns), attributes."""

    __slots__ = ("attributes", "name", "timestamp")

    def __init__(self, name: str, attributes: dict[str, Any], timestamp: int) -> None:
        self.name = name
        self.attributes = attributes
        self.timestamp = timestamp


class StoredSpan(Span):
    """One span: what the SDK's span records, in plain fields, read by ``span_row``."""

    __slots__ = (
        "_context",
        "_sink",
        "attributes",
        "end_time",
        "events",
        "kind",
        "name",
        "parent_id",
        "span_id",
        "start_time",
        "status",
        "trace_id",
    )

    def __init__(
        self,
        sink: Sink,
        name: str,
        kind: SpanKind,
        trace_id: int,
        parent_id: int | None,
        attributes: Attributes,
    ) -> None:
        self._sink = sink
        self._context: SpanContext | None = None
        self.name = name
        self.kind = kind
        self.trace_id = trace_id
        self.span_id = _span_id()
        self.parent_id = parent_id
        self.events: list[StoredEvent] = []
        self.status = UNSET
        self.end_time: int | None = None
        self.attributes: dict[str, Any] = {}
        if attributes:
            self.set_attributes(attributes)
        self.start_time = time_ns()

    def get_span_context(self) -> SpanContext:
        if self._context is None:
            self._context = SpanContext(self.trace_id, self.span_id, False, _SAMPLED)
        return self._context

    def is_recording(self) -> bool:
        return self.end_time is None

    def end(self, end_time: int | None = None) -> None:
        if self.end_time is not None:
            return
        self.end_time = end_time if end_time is not None else time_ns()
        self._sink.on_end(self)

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        if self.end_time is not None:
            return
        own = self.attributes
        for key, value in attributes.items():
            own[key] = tuple(value) if type(value) is list else value  # as the SDK: a copy

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        if self.end_time is None:
            self.attributes[key] = tuple(value) if type(value) is list else value

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        if self.end_time is None:
            stamp = timestamp if timestamp is not None else time_ns()
            self.events.append(StoredEvent(name, dict(attributes or {}), stamp))

    def add_link(self, context: SpanContext, attributes: Attributes = None) -> None:
        return None  # no link is stored (the trace store has no place for one)

    def update_name(self, name: str) -> None:
        if self.end_time is None:
            self.name = name

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        """As the SDK: an OK status is final; UNSET is never set."""
        if self.end_time is not None or self.status.status_code is StatusCode.OK:
            return
        if isinstance(status, Status):
            if status.status_code is not StatusCode.UNSET:
                self.status = status
        elif status is not StatusCode.UNSET:
            self.status = Status(status, description)

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        """The ``exception`` event with the SDK's attributes."""
        module = type(exception).__module__
        qualname = type(exception).__qualname__
        recorded: dict[str, Any] = {
            "exception.type": f"{module}.{qualname}"
            if module and module != "builtins"
            else qualname,
            "exception.message": str(exception),
            "exception.stacktrace": "".join(traceback.format_exception(exception)),
            "exception.escaped": str(escaped),
        }
        if attributes:
            recorded.update(attributes)
        self.add_event("exception", recorded, timestamp)

    def __enter__(self) -> StoredSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is not None:
            self.failed(exc_val, record=True, status=True, escaped=True)
        self.end()

    def failed(self, exc: BaseException, *, record: bool, status: bool, escaped: bool) -> None:
        """An exception left the span's block: recorded as an event and/or as an error status
        (as the SDK's span and ``trace.use_span`` do), unless the span has ended."""
        if self.end_time is not None:
            return
        if record:
            self.record_exception(exc, escaped=escaped)
        if status:
            self.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))


class _Current:
    """``start_as_current_span``: the span made current (as ``trace.use_span`` does, recording
    an ``Exception`` that leaves it and setting its status), ended on exit."""

    __slots__ = ("_end", "_record", "_span", "_status", "_token")

    def __init__(self, span: StoredSpan, record: bool, status: bool, end: bool) -> None:
        self._span = span
        self._record, self._status, self._end = record, status, end

    def __enter__(self) -> StoredSpan:
        self._token = context_api.attach(trace.set_span_in_context(self._span))
        return self._span

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        span = self._span
        context_api.detach(self._token)
        if isinstance(exc_val, Exception):
            span.failed(exc_val, record=self._record, status=self._status, escaped=False)
        if self._end:
            span.end()


class StoredTracer(Tracer):
    """Makes ``StoredSpan``s and hands each to ``sink`` when it ends."""

    def __init__(self, sink: Sink) -> None:
        self._sink = sink

    def start_span(
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
    ) -> StoredSpan:
        parent = trace.get_current_span(context)
        if isinstance(parent, StoredSpan):
            trace_id, parent_id = parent.trace_id, parent.span_id
        else:
            known = parent.get_span_context()
            if known.is_valid:
                trace_id, parent_id = known.trace_id, known.span_id
            else:
                trace_id, parent_id = _trace_id(), None
        span = StoredSpan(self._sink, name, kind, trace_id, parent_id, attributes)
        if start_time is not None:
            span.start_time = start_time
        return span

    def start_as_current_span(  # type: ignore[override]  # a context manager, not a generator
        self,
        name: str,
        context: context_api.Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
        links: Sequence[Link] | None = (),
        start_time: int | None = None,
        record_exception: bool = True,
        set_status_on_exception: bool = True,
        end_on_exit: bool = True,
    ) -> _Current:
        span = self.start_span(name, context, kind, attributes, start_time=start_time)
        return _Current(span, record_exception, set_status_on_exception, end_on_exit)


def _span_id() -> int:
    """A random 64-bit span id (the SDK's ``RandomIdGenerator``)."""
    return _random_id(64)


def _trace_id() -> int:
    return _random_id(128)


def _random_id(bits: int) -> int:
    """Random ``bits`` bits, never 0 (``INVALID_SPAN_ID`` and ``INVALID_TRACE_ID``)."""
    value = random.getrandbits(bits)
    while value == 0:
        value = random.getrandbits(bits)
    return value
