"""The trace store: a span processor that never blocks the code ending a span."""

from __future__ import annotations

import orjson
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


def test_a_nul_or_lone_surrogate_anywhere_in_a_span_is_escaped_not_refused() -> None:
    provider = TracerProvider()
    tracer = provider.get_tracer("test")
    bad = "a\x00b\ud800c"
    try:
        with tracer.start_as_current_span(f"chat {bad}", attributes={"q": bad, "l": [bad]}) as s:
            s.add_event("seen", {"text": bad})
            raise ValueError(f"refused: {bad}")
    except ValueError:
        pass
    row = span_row(s)  # type: ignore[arg-type]
    texts = [v for v in row if isinstance(v, str)]
    assert all("\x00" not in t and "\ud800" not in t for t in texts)
    # The jsonb columns: no string in them decodes to a NUL (jsonb refuses ``\\u0000``).
    assert "\x00" not in str(orjson.loads(row[11])) + str(orjson.loads(row[12]))
    assert row[5] == "chat a\\u0000b\\ud800c"
    assert orjson.loads(row[11])["q"] == orjson.loads(row[11])["l"][0] == "a\\u0000b\\ud800c"
    events = orjson.loads(row[12])
    assert events[0]["attributes"]["text"] == "a\\u0000b\\ud800c"
    assert "a\\u0000b\\ud800c" in events[1]["attributes"]["exception.message"]


def test_a_span_without_unstorable_text_is_rendered_as_it_was() -> None:
    provider = TracerProvider()
    with provider.get_tracer("test").start_as_current_span("x", attributes={"k": "é 😀"}) as s:
        pass
    assert span_row(s)[11] == '{"k":"é 😀"}'  # type: ignore[arg-type]
