"""Traces carry the GenAI semantic-convention attributes, with child spans for the layers
and each provider attempt (seen through an in-memory exporter)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from propylon.testing import Behaviour, FakeUpstream, Fault
from tests.integration.observe.support import call, chat, serve

NO_GUARD = {"enabled": False}  # these tests are about the traces alone


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider
    provider.shutdown()


def named(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


async def test_a_chat_request_is_traced_with_genai_attributes_and_child_spans(
    database_url: str,
    upstream: FakeUpstream,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    async with serve(database_url, upstream, tracer_provider=provider, guard=NO_GUARD) as server:
        reply = await chat(server, "trace me", temperature=0, max_tokens=50)
        assert reply.status == 200
        spans = exporter.get_finished_spans()

    (root,) = named(spans, "chat gpt-test")
    attributes = dict(root.attributes or {})
    usage = reply.body["usage"]
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "gpt-test"
    assert attributes["gen_ai.request.temperature"] == 0
    assert attributes["gen_ai.request.max_tokens"] == 50
    assert attributes["gen_ai.provider.name"] == "openai"
    assert attributes["gen_ai.usage.input_tokens"] == usage["prompt_tokens"]
    assert attributes["gen_ai.usage.output_tokens"] == usage["completion_tokens"]
    assert attributes["gen_ai.response.model"] == reply.body["model"]
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["propylon.cache.status"] == "miss"

    trace_id = root.context.trace_id
    (limits,) = named(spans, "propylon.limits")
    (cache,) = named(spans, "propylon.cache")
    (attempt,) = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert {s.context.trace_id for s in (limits, cache, attempt)} == {trace_id}
    assert limits.parent is not None and limits.parent.span_id == root.context.span_id
    assert cache.parent is not None and cache.parent.span_id == limits.context.span_id
    assert attempt.parent is not None and attempt.parent.span_id == cache.context.span_id
    assert attempt.name == "chat fake-gpt"
    assert dict(attempt.attributes or {}) == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "gen_ai.request.model": "fake-gpt",
        "propylon.deployment": "openai/fake-gpt",
    }


async def test_a_cache_hit_is_marked_and_makes_no_attempt_span(
    database_url: str,
    upstream: FakeUpstream,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    async with serve(database_url, upstream, tracer_provider=provider, guard=NO_GUARD) as server:
        assert (await chat(server, "cached", temperature=0)).status == 200
        exporter.clear()
        assert (await chat(server, "cached", temperature=0)).status == 200
        spans = exporter.get_finished_spans()

    (root,) = named(spans, "chat gpt-test")
    attributes = dict(root.attributes or {})
    assert attributes["propylon.cache.status"] == "hit-exact"
    assert attributes["propylon.cache.hit"] is True
    assert not [s for s in spans if s.kind is SpanKind.CLIENT]


async def test_each_failed_attempt_is_a_span_with_its_error_type(
    database_url: str,
    upstream: FakeUpstream,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    upstream.set_behaviour(Behaviour(faults=(Fault(kind="status", status=500),)))
    async with serve(database_url, upstream, tracer_provider=provider, guard=NO_GUARD) as server:
        reply = await chat(server, "fails")
        stream = await call(
            server,
            "POST",
            "/v1/chat/completions",
            json={"model": "gpt-test", "messages": [], "stream": True},
        )
        spans = exporter.get_finished_spans()

    assert reply.status == 502 and stream.status == 400
    attempts = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(attempts) == 2
    assert {dict(s.attributes or {})["error.type"] for s in attempts} == {
        reply.body["error"]["code"]
    }
    (root, invalid) = sorted(named(spans, "chat gpt-test"), key=lambda s: s.start_time or 0)
    assert dict(root.attributes or {})["error.type"] == reply.body["error"]["code"]
    assert not root.status.is_ok and not invalid.status.is_ok


async def test_embeddings_are_traced_as_the_embeddings_operation(
    database_url: str,
    upstream: FakeUpstream,
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
) -> None:
    async with serve(database_url, upstream, tracer_provider=provider, guard=NO_GUARD) as server:
        reply = await call(
            server, "POST", "/v1/embeddings", json={"model": "embed-test", "input": "x"}
        )
        spans = exporter.get_finished_spans()

    (root,) = named(spans, "embeddings embed-test")
    attributes = dict(root.attributes or {})
    assert attributes["gen_ai.operation.name"] == "embeddings"
    assert attributes["gen_ai.usage.input_tokens"] == reply.body["usage"]["prompt_tokens"]
    (attempt,) = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert dict(attempt.attributes or {})["gen_ai.operation.name"] == "embeddings"
