"""What PostgreSQL refuses never stops the request log: a NUL in a prompt is stored escaped,
and a row the database refuses for its data is dropped alone while the writer goes on, logged
with its request id. The trace store escapes the same way: a span quoting a NUL is kept, with
the rest of its batch."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp
import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider

from propylon.db.database import Database
from propylon.gateway.call import Attempt
from propylon.observe.copy_buffer import CopyBuffer
from propylon.observe.request_log import RequestLog
from propylon.observe.span_store import SpanStore
from propylon.observe.tracing import mark_root
from propylon.testing import Behaviour, FakeUpstream, Fault
from tests.integration.observe.support import ADMIN, call, chat, record, serve
from tests.support.servers import AppServer
from tests.support.waiting import eventually


async def count_rows(database: Database, where: str = "true") -> int:
    async with database.connection() as conn:
        cur = await conn.execute(f"SELECT count(*) AS n FROM request_log WHERE {where}")
        row = await cur.fetchone()
    return int(row["n"]) if row else 0


async def wait_for_rows(database: Database, expected: int) -> int:
    """Rows in the request log, once there are at least ``expected``."""

    async def enough() -> int | None:
        found = await count_rows(database)
        return found if found >= expected else None

    return await eventually(enough, f"{expected} request log rows")


async def chat_many(server: AppServer, count: int, concurrency: int = 16) -> list[int]:
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "after the NUL"}]}
    statuses: list[int] = []
    gate = asyncio.Semaphore(concurrency)
    async with aiohttp.ClientSession(headers=server.headers) as http:

        async def one() -> None:
            async with gate, http.post(f"{server.v1}/chat/completions", json=body) as resp:
                await resp.read()
                statuses.append(resp.status)

        await asyncio.gather(*(one() for _ in range(count)))
    return statuses


async def test_a_nul_in_a_chat_message_is_logged_escaped_and_the_next_thousand_are_logged(
    database_url: str, upstream: FakeUpstream
) -> None:
    async with serve(database_url, upstream) as server:
        services = server.app.state.services
        first = await chat(server, "a\x00b")
        assert first.status == 200
        assert await chat_many(server, 1000) == [200] * 1000

        database = services.database
        assert await wait_for_rows(database, 1001) == 1001
        reply = await call(
            server, "GET", f"/v1/logs?request_id={first.headers['x-request-id']}", key=ADMIN
        )
        (record,) = reply.body["data"]
        prompt: list[dict[str, Any]] = orjson.loads(record["prompt"])
        assert prompt[0]["content"] == "a\x00b"  # the JSON text holds it as \u0000
        assert "\x00" not in record["response"] and "\\u0000" in record["response"]
        request_log = services.observe.request_log
        assert (request_log.refused, request_log.dropped, request_log.failed_writes) == (0, 0, 0)
        assert request_log.loop.healthy


async def test_a_nul_in_a_prompt_quoted_by_an_upstream_error_is_kept_in_the_stored_trace(
    database_url: str, upstream: FakeUpstream
) -> None:
    """The upstream refuses the prompt and quotes it: the exception's message (a span event,
    the span's status) holds the NUL, and so does a model's name sent with one. Before, those
    spans were refused by PostgreSQL and dropped, leaving the traces without them."""
    quoted = "Invalid content 'a\x00b' in messages[0]."
    fault = Fault(kind="status", status=400, message=quoted, models=("fake-gpt",))
    upstream.set_behaviour(Behaviour(faults=(fault,)))
    async with serve(database_url, upstream) as server:
        refused = await chat(server, "a\x00b")
        assert refused.status == 400, refused.body
        unknown = await call(
            server,
            "POST",
            "/v1/chat/completions",
            json={"model": "no\x00such", "messages": [{"role": "user", "content": "a\x00b"}]},
        )
        assert unknown.status == 404, unknown.body

        async def trace_of(reply: Any, root: str) -> list[dict[str, Any]] | None:
            request_id = reply.headers["x-request-id"]
            found = await call(server, "GET", f"/v1/traces?request_id={request_id}")
            assert found.status == 200, found.body
            if len(found.body["data"]) != 1:
                return None
            spans: list[dict[str, Any]] = found.body["data"][0]["spans"]
            return spans if any(s["name"] == root for s in spans) else None

        spans = await eventually(lambda: trace_of(refused, "chat gpt-test"), "the trace")
        (client,) = [s for s in spans if s["name"] == "chat fake-gpt"]
        assert client["status"] == "error"
        (event,) = [e for e in client["events"] if e["name"] == "exception"]
        assert "a\\u0000b" in event["attributes"]["exception.message"]
        spans = await eventually(lambda: trace_of(unknown, "chat no\\u0000such"), "the trace")
        (root,) = [s for s in spans if s["parent_span_id"] is None]
        assert root["attributes"]["gen_ai.request.model"] == "no\\u0000such"
        store = server.app.state.services.observe.spans.buffer
        assert (store.refused, store.dropped, store.failed_writes) == (0, 0, 0)


async def test_a_row_the_database_refuses_is_dropped_alone_and_the_writer_goes_on(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """``\\u0000`` in jsonb is refused by PostgreSQL itself (SQLSTATE 22P05) however often it
    is tried: a permanent refusal. Before, the writer retried that batch forever. The log line
    names the request, so an operator can find it, and not the user's text: before, it had no
    request id, and the error's message quoted the refused value."""
    log = RequestLog(database, flush_interval_s=0.02)
    await log.start()
    try:
        log.submit(record("before"))
        log.submit(record("refused", metadata={"label": "user's own words\x00"}))
        log.submit(record("after"))
        assert await wait_for_rows(database, 2) == 2
        for n in range(100):
            log.submit(record(f"next-{n}"))
        assert await wait_for_rows(database, 102) == 102
    finally:
        await log.stop()
    assert await count_rows(database, "request_id = 'refused'") == 0
    assert (log.refused, log.written, log.pending) == (1, 102, 0)
    assert log.loop.healthy and log.failed_writes == 0
    (line,) = [r for r in caplog.records if "refused by the database" in r.getMessage()]
    assert line.__dict__["request_id"] == "refused"
    assert line.__dict__["error"] == "UntranslatableCharacter (SQLSTATE 22P05)"
    assert "own words" not in caplog.text and "own words" not in repr(line.__dict__)


async def test_a_nul_or_lone_surrogate_in_a_jsonb_column_of_the_log_is_stored_escaped(
    database: Database,
) -> None:
    """The guard's verdicts, the response headers and the attempts are ``jsonb``: a NUL there
    (``\\u0000`` once serialised) or a lone surrogate was refused by PostgreSQL and the row
    dropped. Now each string is escaped, as in the text columns, and the row kept."""
    bad = "a\x00b\udc80c"
    log = RequestLog(database, flush_interval_s=0.02)
    await log.start()
    try:
        log.submit(
            record(
                "escaped",
                attempts=[Attempt(f"deployment-{bad}", "ok", 1.0)],
                guard={"action": "flag", "verdict": {"signals": [bad]}, bad: [{"k": bad}]},
                headers={"x-propylon-route": bad},
            )
        )
        assert await wait_for_rows(database, 1) == 1
    finally:
        await log.stop()
    assert (log.refused, log.written) == (0, 1)
    async with database.connection() as conn:
        cur = await conn.execute(
            "SELECT attempts, guard, headers FROM request_log WHERE request_id = 'escaped'"
        )
        row = await cur.fetchone()
    assert row is not None
    shown = "a\\u0000b\\udc80c"
    assert row["attempts"][0]["deployment"] == f"deployment-{shown}"
    guard = {"action": "flag", "verdict": {"signals": [shown]}, shown: [{"k": shown}]}
    assert row["guard"] == guard
    assert row["headers"] == {"x-propylon-route": shown}


async def test_a_writer_that_cannot_write_makes_readyz_fail_and_fires_its_metric(
    database_url: str, upstream: FakeUpstream
) -> None:
    async with serve(database_url, upstream, access={"usage_flush_s": 0.05}) as server:
        services = server.app.state.services
        store = services.access
        real = store.record_usage_rows

        async def unavailable(rows: Any) -> None:
            raise ConnectionError("usage table unreachable")

        store.record_usage_rows = unavailable
        assert (await chat(server)).status == 200
        async with asyncio.timeout(30):
            while services.usage.loop.failed_writes < 2:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.02)
        ready = await call(server, "GET", "/readyz", key=None)
        assert ready.status == 503
        assert ready.body["writers"]["usage"] == "failing"
        assert ready.body["database"] == "ok"
        metrics = await call(server, "GET", "/metrics", key=ADMIN)
        assert 'propylon_writer_failing{writer="usage"} 1.0' in metrics.body

        store.record_usage_rows = real
        async with asyncio.timeout(30):
            while not services.usage.loop.healthy:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.02)
        assert (await call(server, "GET", "/readyz", key=None)).status == 200


async def test_an_item_that_cannot_be_rendered_is_dropped_alone_and_counted(
    database: Database,
) -> None:
    """Dropped without a trace in the metrics before: only a log line said so."""
    async with database.connection() as conn:
        await conn.execute("CREATE TABLE rendered (n integer)")
    buffer: CopyBuffer[str] = CopyBuffer(
        database, "rendered", ["n"], lambda item: (int(item),), log=logging.getLogger("test")
    )
    for item in ("1", "not a number", "3"):
        buffer.submit(item)
    assert await buffer.flush() == 2
    assert (buffer.written, buffer.refused, buffer.pending) == (2, 1, 0)


async def test_a_span_the_database_refuses_is_logged_with_its_trace_and_request(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """A span stored twice breaks the primary key (SQLSTATE 23505): the second copy is
    dropped, and its log line names the trace, the span and the request it belongs to."""
    store = SpanStore(database)
    provider = TracerProvider()
    provider.add_span_processor(store)
    with provider.get_tracer("test").start_as_current_span("chat user's own words") as root:
        mark_root(root, "acme", "request:r-span")
    store.on_end(root)  # type: ignore[arg-type]  # the SDK's span is a ReadableSpan
    assert await store.buffer.flush() == 1
    assert store.buffer.refused == 1
    (line,) = [r for r in caplog.records if "refused by the database" in r.getMessage()]
    context = root.get_span_context()
    assert line.__dict__["subject"] == "request:r-span"
    assert line.__dict__["trace_id"] == f"{context.trace_id:032x}"
    assert line.__dict__["span_id"] == f"{context.span_id:016x}"
    assert line.__dict__["error"] == "UniqueViolation (SQLSTATE 23505)"
    assert "own words" not in caplog.text and "own words" not in repr(line.__dict__)
