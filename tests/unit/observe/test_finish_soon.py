"""A successful call is timed when it ends and recorded on the event loop's next turn, after
its response has been handed on; with a recording span it is recorded at once."""

from __future__ import annotations

import asyncio
import time

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import INVALID_SPAN

from propylon.db.database import Database
from propylon.gateway.call import CallInfo, Routed
from propylon.observe.metrics import Metrics
from propylon.observe.recorded import Recorder
from propylon.observe.request_log import RequestLog
from propylon.settings import ObserveSettings


def recorder() -> Recorder:
    log = RequestLog(Database("postgresql://unused"), flush_interval_s=60)
    return Recorder(log, Metrics(), ObserveSettings(), tracer=None)


async def test_the_record_is_made_on_the_next_turn_with_the_end_taken_at_once() -> None:
    rec = recorder()
    call = CallInfo(request_id="r1")
    rec.finish_soon(call, None, INVALID_SPAN, endpoint="chat", prompt="hi", response="hello")
    ended = time.perf_counter()
    assert rec.request_log.pending == 0  # the response goes out first
    busy_until = time.perf_counter() + 0.05  # the server writing the response, say
    while time.perf_counter() < busy_until:
        pass
    await asyncio.sleep(0)
    assert rec.request_log.pending == 1
    (record,) = list(rec.request_log._buffer)
    assert record.request_id == "r1" and record.status == 200
    # Its latency ends when finish_soon was called, not 50 ms later.
    assert record.latency_ms <= (ended - call.started) * 1000.0 + 1.0


async def test_a_recording_span_gets_its_attributes_before_it_ends() -> None:
    rec = recorder()
    tracer = TracerProvider().get_tracer("test")
    call = CallInfo(request_id="r2")
    call.report(Routed("gpt-test"))
    with tracer.start_as_current_span("chat gpt-test") as span:
        rec.finish_soon(call, None, span, endpoint="chat", prompt="hi", response="hello")
    attributes = getattr(span, "attributes", None)  # the SDK's span
    assert attributes is not None and "propylon.attempts" in attributes
    # The record still waits for the next turn: a traced request does not pay for it.
    assert rec.request_log.pending == 0
    await asyncio.sleep(0)
    assert rec.request_log.pending == 1
