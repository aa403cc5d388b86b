"""What recording every request costs on the request path, and what writing it costs off it.

Measured in-process, so the numbers are Propylon's code alone (no HTTP, no upstream):

* hot path: the same call made through an instant inner service, bare and wrapped in
  ``RecordedChat`` (record built and queued, metrics counted, request span with tracing off
  and on), and an ASGI request bare and through ``RequestContextMiddleware`` (request id,
  overhead header, access log line off and on). CPU time (``time.process_time``) over many
  calls, alternating rounds, difference per call;
* off the hot path: rendering records to rows (JSON, redaction) and writing them with COPY
  to the run's PostgreSQL, per record.
"""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer, get_tracer

from bench.document import stamp
from bench.processes import embedded_database
from bench.suite import Options, Section, main_for
from propylon.db.database import Database
from propylon.db.migrator import migrate
from propylon.gateway.call import Answered, CacheVerdict, CallInfo, UsageReported
from propylon.http.request_context import RequestContextMiddleware
from propylon.observe.context import RequestContext, current_request
from propylon.observe.logging import JSONFormatter
from propylon.observe.metrics import Metrics
from propylon.observe.record import RequestRecord
from propylon.observe.recorded import RecordedChat, Recorder
from propylon.observe.request_log import RequestLog
from propylon.principal import Principal
from propylon.settings import ModelPrice, ObserveSettings

GOAL_MS = 0.2
PRINCIPAL = Principal(tenant_id="t-1", tenant_name="bench", key_id="k-1", key_prefix="ppl_abcd")
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. " * 8},
    {"role": "user", "content": "What is the capital of France? Answer in one word, please."},
]
REQUEST: dict[str, Any] = {
    "model": "gpt-bench",
    "messages": MESSAGES,
    "temperature": 0.2,
    "metadata": {"prompt_name": "capital", "prompt_version": "v3"},
}
USAGE = {"prompt_tokens": 52, "completion_tokens": 16, "total_tokens": 68}
RESPONSE = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "model": "gpt-bench",
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "Paris."}, "finish_reason": "stop"}
    ],
    "usage": USAGE,
}


class Instant:
    """An inner service that answers at once, filling in what the gateway would."""

    async def complete(self, request: dict[str, Any], call: CallInfo | None = None) -> Any:
        assert call is not None
        call.report(Answered("openai/gpt-bench"), UsageReported(USAGE), CacheVerdict("miss"))
        return RESPONSE

    async def stream(self, request: dict[str, Any], call: CallInfo | None = None) -> Any:
        raise NotImplementedError


def recorder(tracer: Tracer, capacity: int) -> Recorder:
    settings = ObserveSettings(prices={"gpt-bench": ModelPrice(input=0.15, output=0.6)})
    log = RequestLog(Database("postgresql://unused"), buffer_size=capacity)
    metrics = Metrics(models=["gpt-bench"], deployments=["openai/gpt-bench"])
    return Recorder(log, metrics, settings, tracer, providers={"openai/gpt-bench": "openai"})


async def cpu_per_call(make: Callable[[], Awaitable[Any]], n: int) -> float:
    """CPU milliseconds per call of ``make``, over ``n`` calls."""
    started = time.process_time()
    for _ in range(n):
        await make()
    return (time.process_time() - started) * 1000.0 / n


async def paired(
    bare: Callable[[], Awaitable[Any]],
    measured: Callable[[], Awaitable[Any]],
    n: int,
    rounds: int = 4,
) -> tuple[float, float]:
    """Mean CPU ms per call of each, over alternating rounds (after a warm-up)."""
    await cpu_per_call(bare, n // 10)
    await cpu_per_call(measured, n // 10)
    bare_ms: list[float] = []
    measured_ms: list[float] = []
    for _ in range(rounds):
        bare_ms.append(await cpu_per_call(bare, n))
        measured_ms.append(await cpu_per_call(measured, n))
    return sum(bare_ms) / rounds, sum(measured_ms) / rounds


def chat_call(service: Any) -> Callable[[], Awaitable[Any]]:
    async def one() -> Any:
        token = current_request.set(RequestContext(request_id="bench", path="/v1/chat/completions"))
        try:
            return await service.complete(REQUEST, CallInfo(principal=PRINCIPAL))
        finally:
            current_request.reset(token)

    return one


def asgi_call(app: Any) -> Callable[[], Awaitable[Any]]:
    stub = SimpleNamespace(
        state=SimpleNamespace(services=SimpleNamespace(observe=SimpleNamespace(access_log=True)))
    )
    headers = [(b"host", b"127.0.0.1"), (b"x-request-id", b"abc-123")]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        return None

    async def one() -> None:
        scope = {
            "type": "http",
            "method": "GET",
            "path": "/healthz",
            "headers": headers,
            "app": stub,
            "state": {},
        }
        await app(scope, receive, send)

    return one


async def plain_app(scope: Any, receive: Any, send: Any) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"status":"ok"}'})


def sample_record(n: int) -> RequestRecord:
    return RequestRecord(
        request_id=f"bench-{n}",
        created_at=time.time(),
        endpoint="chat",
        status=200,
        latency_ms=12.5,
        tenant_id=PRINCIPAL.tenant_id,
        key_prefix=PRINCIPAL.key_prefix,
        requested_model="gpt-bench",
        deployment="openai/gpt-bench",
        content_policy="full",
        prompt=MESSAGES,
        response="Paris.",
        prompt_tokens=52,
        completion_tokens=16,
        cost_usd=0.0000174,
        overhead_ms=0.8,
        upstream_ms=11.7,
        cache_status="miss",
        metadata={"prompt_name": "capital", "prompt_version": "v3"},
    )


async def write_cost(url: str, records: int) -> tuple[float, float]:
    """CPU ms per record and records per second of COPY batches of 500 into request_log."""
    database = Database(url, min_size=1, max_size=2)
    await database.open()
    try:
        await migrate(database)
        log = RequestLog(database, buffer_size=records, batch_size=500)
        for n in range(records):
            log.submit(sample_record(n))
        started, cpu = time.perf_counter(), time.process_time()
        await log.flush()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
        async with database.connection() as conn:
            await conn.execute("DELETE FROM request_log WHERE request_id LIKE 'bench-%'")
        return cpu * 1000.0 / records, records / wall
    finally:
        await database.close()


async def run(options: Options) -> Section:
    n = options.scaled(20_000, 2_000)
    inner = Instant()
    off = recorder(get_tracer("bench"), capacity=10 * n)
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    on = recorder(provider.get_tracer("bench"), capacity=10 * n)
    bare_ms, recorded_ms = await paired(chat_call(inner), chat_call(RecordedChat(inner, off)), n)
    _, traced_ms = await paired(chat_call(inner), chat_call(RecordedChat(inner, on)), n // 2)
    provider.shutdown()

    access = logging.getLogger("propylon.access")
    sink = logging.StreamHandler(io.StringIO())
    sink.setFormatter(JSONFormatter())
    access.addHandler(sink)
    access.propagate = False
    try:
        access.setLevel(logging.WARNING)
        asgi_bare, asgi_quiet = await paired(
            asgi_call(plain_app), asgi_call(RequestContextMiddleware(plain_app)), n
        )
        access.setLevel(logging.INFO)
        _, asgi_logged = await paired(
            asgi_call(plain_app), asgi_call(RequestContextMiddleware(plain_app)), n // 2
        )
    finally:
        access.removeHandler(sink)
        access.propagate = True
        access.setLevel(logging.NOTSET)

    records = [sample_record(i) for i in range(n)]
    started = time.process_time()
    for record in records:
        record.to_row(32_768)
    render_ms = (time.process_time() - started) * 1000.0 / n

    async with embedded_database(options) as url:
        write_ms, write_rate = await write_cost(url, options.scaled(20_000, 2_000))

    wrapper = recorded_ms - bare_ms
    middleware = asgi_logged - asgi_bare  # as configured by default: access log on
    total = wrapper + middleware
    verdict = "**met**" if total < GOAL_MS else "**missed**"
    rows = [
        ("**hot path, default settings** (next two rows)", total, f"< {GOAL_MS} ms", verdict),
        ("request log wrapper: record + queue + metrics, tracing off", wrapper, "", ""),
        ("request-context middleware: id, overhead header, access log", middleware, "", ""),
        ("… the middleware without the access log line", asgi_quiet - asgi_bare, "", ""),
        ("… the wrapper with tracing on (in-memory exporter)", traced_ms - bare_ms, "", ""),
        ("off the hot path: render one record (JSON, redaction)", render_ms, "", ""),
        ("off the hot path: render + COPY one record (client CPU)", write_ms, "", ""),
    ]
    table = "\n".join(
        f"| {name} | {value * 1000:.1f} µs | {goal} | {mark} |" for name, value, goal, mark in rows
    )
    markdown = f"""## Observability: the request log

{stamp(options.command)}

| measurement | CPU per request | goal | |
|---|---:|---|---|
{table}
| off the hot path: COPY throughput, batches of 500 | {write_rate:,.0f} records/s | | |

How: in-process, {n:,} calls per round, 4 alternating rounds against the same call without
the layer (an inner service that answers at once; a bare ASGI app); CPU is
`time.process_time()` of this process, the difference per call is the layer's. The goal
counts what every request pays by default: the wrapper (tracing is off unless `OTEL_*` is
set) and the middleware with its access log line (`observe.access_log`). Writing happens in
one background task, paid per batch of 500 rather than by the request; past the throughput
above, sustained, the buffer fills and records are dropped (counted); requests are not slowed.
"""
    return Section("request_log", markdown)


if __name__ == "__main__":
    main_for("bench.request_log")
