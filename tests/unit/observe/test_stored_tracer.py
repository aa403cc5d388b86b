"""The tracer that feeds the trace store alone stores what the OpenTelemetry SDK would."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer

from propylon.observe.span_store import SpanStore, span_row
from propylon.observe.stored_tracer import StoredSpan, StoredTracer, needs_sdk
from propylon.observe.tracing import mark_root, open_tracing, span
from tests.unit.observe.test_request_log_buffer import DownDatabase


class Kept:
    """A sink that keeps the spans it is handed, in the order they ended."""

    def __init__(self) -> None:
        self.spans: list[Any] = []

    def on_end(self, span: Any) -> None:
        self.spans.append(span)


def a_request(tracer: Tracer) -> None:
    """What a proxied request does with its tracer: a root, layers, a client span that fails
    once, a stream's span made current by hand, a cancelled call."""
    with span(tracer, "chat m", lambda: {"gen_ai.request.model": "m", "temperature": 0.5}) as root:
        with tracer.start_as_current_span("propylon.limits") as limits:
            limits.set_attributes({"propylon.attempts": 2, "reasons": ["stop", "length"]})
            try:
                with tracer.start_as_current_span(
                    "chat up", kind=SpanKind.CLIENT, attributes={"propylon.deployment": "a"}
                ) as client:
                    client.set_attribute("error.type", "timeout")
                    raise TimeoutError("upstream \x00 slow")
            except TimeoutError:
                pass
            with tracer.start_as_current_span("chat up", kind=SpanKind.CLIENT):
                pass
        streamed = tracer.start_span("propylon.stream", attributes={"n": None, "b": True})
        with trace.use_span(streamed, end_on_exit=False):
            assert trace.get_current_span() is streamed
        streamed.set_status(Status(StatusCode.OK))
        streamed.set_status(StatusCode.ERROR, "ignored: OK is final")
        streamed.end()
        streamed.set_attribute("late", 1)  # after the end: ignored, as by the SDK
        try:
            with tracer.start_as_current_span("propylon.cancelled"):
                raise asyncio.CancelledError
        except asyncio.CancelledError:
            pass
        try:
            with tracer.start_as_current_span("propylon.failed"):
                raise ValueError("bad")
        except ValueError:
            pass
        mark_root(root, "acme", "request:r1")
        root.set_attributes({"gen_ai.response.finish_reasons": ["stop"]})


def comparable(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """Rows with ids replaced by their order of appearance, times and durations dropped, and
    each exception's stack trace cut to its last line (the SDK's has its own frames too)."""
    names: dict[str | None, int | None] = {None: None}
    out = []
    for row in rows:
        trace_id, span_id, parent_id, *rest = row
        for value in (trace_id, span_id, parent_id):
            names.setdefault(value, len(names))
        events = orjson.loads(rest[-1]) if rest[-1] else None
        for event in events or ():
            event.pop("at_ms")
            stack = event["attributes"].get("exception.stacktrace")
            if stack:
                event["attributes"]["exception.stacktrace"] = stack.strip().splitlines()[-1]
        out.append(
            (names[trace_id], names[span_id], names[parent_id], *rest[:4], *rest[6:-1], events)
        )
    return out


def test_the_stored_tracer_stores_the_rows_the_sdk_would() -> None:
    sdk_store = SpanStore(DownDatabase())
    provider = TracerProvider()
    provider.add_span_processor(sdk_store)
    a_request(provider.get_tracer("test"))
    kept = Kept()
    a_request(StoredTracer(kept))

    sdk_rows = [span_row(s) for s in sdk_store.buffer._buffer]
    own_rows = [span_row(s) for s in kept.spans]
    assert comparable(own_rows) == comparable(sdk_rows)
    assert len(own_rows) == 7
    assert len({row[0] for row in own_rows}) == 1  # one trace


def test_a_span_outside_any_other_starts_a_new_trace_and_times_itself() -> None:
    kept = Kept()
    tracer = StoredTracer(kept)
    with tracer.start_as_current_span("a"):
        pass
    with tracer.start_as_current_span("b"):
        pass
    first, second = kept.spans
    assert first.trace_id != second.trace_id and first.parent_id is None
    assert first.end_time >= first.start_time
    assert trace.get_current_span() is trace.INVALID_SPAN  # detached on exit


def test_an_explicit_context_names_the_parent() -> None:
    kept = Kept()
    tracer = StoredTracer(kept)
    parent = tracer.start_span("parent")
    child = tracer.start_span("child", context=trace.set_span_in_context(parent))
    assert (child.trace_id, child.parent_id) == (parent.trace_id, parent.span_id)
    assert child.get_span_context().span_id == child.span_id
    assert child.get_span_context().is_valid


def test_ending_twice_hands_the_span_over_once() -> None:
    kept = Kept()
    spanned = StoredTracer(kept).start_span("once")
    spanned.end()
    spanned.end()
    assert kept.spans == [spanned] and isinstance(spanned, StoredSpan)


def test_with_only_the_store_the_stored_tracer_feeds_it_until_shutdown() -> None:
    store = SpanStore(DownDatabase())
    with open_tracing(env={}, store=store) as tracer:
        assert isinstance(tracer, StoredTracer)
        with span(tracer, "kept"):
            pass
    assert store.buffer.pending == 1
    with span(tracer, "after the end"):
        pass
    assert store.buffer.pending == 1


@pytest.mark.parametrize(
    "env",
    [
        {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"},
        {"OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT": "4"},
        {"OTEL_SDK_DISABLED": "true"},
    ],
)
def test_sampling_limits_or_a_disabled_sdk_asked_by_variables_use_the_sdk(
    env: dict[str, str],
) -> None:
    assert needs_sdk(env)
    store = SpanStore(DownDatabase())
    with open_tracing(env=env, store=store) as tracer:
        assert tracer is not None and not isinstance(tracer, StoredTracer)


def test_other_variables_keep_the_stored_tracer() -> None:
    assert not needs_sdk({"OTEL_SERVICE_NAME": "p", "PATH": "/bin"})
