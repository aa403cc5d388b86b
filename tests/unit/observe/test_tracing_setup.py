"""Tracing is switched on by the standard OTEL_* variables, and off otherwise."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from propylon.observe.tracing import _env_enabled, open_tracing, request_attributes


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


def test_without_otel_variables_spans_go_to_the_global_provider() -> None:
    with open_tracing(env={}) as tracer:
        span = tracer.start_span("x")
        assert not span.is_recording(), "the global provider is a no-op unless installed"
        span.end()
    assert trace.get_tracer_provider() is not None


def test_an_otlp_endpoint_builds_an_sdk_provider_that_records() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "OTEL_SERVICE_NAME": "p"}
    with open_tracing(env=env) as tracer:
        span = tracer.start_span("x")
        assert span.is_recording()
        span.end()


def test_request_attributes_follow_the_genai_conventions() -> None:
    request = {"model": "m", "temperature": 0.2, "max_tokens": 9, "stream": True, "seed": True}
    assert request_attributes("chat", request) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "m",
        "gen_ai.request.temperature": 0.2,
        "gen_ai.request.max_tokens": 9,
    }
