"""Tracing is switched on by the standard OTEL_* variables, and off otherwise."""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider as SDKTracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from propylon.observe.span_store import SpanStore
from propylon.observe.tracing import _env_enabled, open_tracing, request_attributes, span
from tests.unit.observe.test_request_log_buffer import DownDatabase


@pytest.mark.parametrize(
    ("env", "enabled"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://x"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_otel_variables_decide_whether_traces_are_exported(
    env: dict[str, str], enabled: bool
) -> None:
    assert _env_enabled(env) is enabled


def test_without_otel_variables_or_a_global_provider_tracing_is_off() -> None:
    with open_tracing(env={}) as tracer:
        assert tracer is None
        with span(tracer, "x", attributes=lambda: pytest.fail("not computed")) as current:
            assert current is trace.INVALID_SPAN
            assert trace.get_current_span() is trace.INVALID_SPAN  # nothing attached


def test_with_a_store_and_nothing_else_a_tracer_of_its_own_hands_it_the_spans() -> None:
    store = SpanStore(DownDatabase())
    with open_tracing(env={}, store=store) as tracer:
        assert tracer is not None
        with span(tracer, "kept", attributes=lambda: {"a": 1}):
            pass
    assert store.buffer.pending == 1


def test_a_provider_handed_in_also_feeds_the_store() -> None:
    store, exporter = SpanStore(DownDatabase()), InMemorySpanExporter()
    provider = SDKTracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with open_tracing(provider, env={}, store=store) as tracer:
        assert tracer is not None
        with span(tracer, "both"):
            pass
    assert store.buffer.pending == 1 and len(exporter.get_finished_spans()) == 1


def test_a_global_provider_installed_by_the_host_application_gets_the_spans(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    installed = SDKTracerProvider()
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: installed)
    with open_tracing(env={}) as tracer:
        assert tracer is not None
        with span(tracer, "x", attributes=lambda: {"a": 1}) as current:
            assert current.is_recording()
            assert trace.get_current_span() is current


def test_an_otlp_endpoint_builds_an_sdk_provider_that_records() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SERVICE_NAME": "p"}
    with open_tracing(env=env) as tracer:
        assert tracer is not None
        started = tracer.start_span("x")
        assert started.is_recording()
        started.end()


def test_request_attributes_follow_the_genai_conventions() -> None:
    request = {"model": "m", "temperature": 0.2, "max_tokens": 9, "stream": True, "seed": True}
    assert request_attributes("chat", request) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "m",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 9,
    }
