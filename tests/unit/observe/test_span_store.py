"""The trace store: a span processor that never blocks the code ending a span."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider

from propylon.observe.span_store import SpanStore, span_row
from propylon.observe.tracing import mark_root
from tests.unit.observe.test_request_log_buffer import DownDatabase


def test_spans_past_the_bound_are_dropped_and_counted_while_the_database_is_down() -> None:
    store = SpanStore(DownDatabase(), buffer_size=3)
    provider = TracerProvider()
    provider.add_span_processor(store)
    tracer = provider.get_tracer("test")
    for n in range(5):
        with tracer.start_as_current_span(f"span {n}"):
            pass
    assert (store.buffer.pending, store.buffer.dropped) == (3, 2)


def test_a_span_ended_after_the_store_stopped_is_not_queued() -> None:
    store = SpanStore(DownDatabase())
    provider = TracerProvider()
    provider.add_span_processor(store)
    provider.shutdown()
    with provider.get_tracer("test").start_as_current_span("late"):
        pass
    assert store.buffer.pending == 0


def test_a_root_names_its_tenant_and_subject_and_its_children_neither() -> None:
    rows = []
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("root") as root:
        mark_root(root, "acme", "request:r1")
        with tracer.start_as_current_span("child", attributes={"scores": [0.5, 0.25]}) as child:
            pass
    rows = [span_row(s) for s in (child, root)]  # type: ignore[arg-type]
    (child_row, root_row) = rows
    assert root_row[3:5] == ("acme", "request:r1") and root_row[2] is None
    assert child_row[3:5] == (None, None) and child_row[2] == root_row[1]
    assert child_row[0] == root_row[0]  # one trace
    assert child_row[11] == '{"scores":[0.5,0.25]}'
