"""Database-backed routes fail fast while PostgreSQL is stopped (503 with Retry-After, within
the pool's short acquire timeout) and serve again within seconds once it is back (issue 27)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp

from propylon.testing import FakeUpstream
from tests.integration.observe.support import ADMIN, serve
from tests.support.databases import PostgresServer, create_database, restart_postgres


async def request(
    http: aiohttp.ClientSession, method: str, url: str, key: str, body: Any = None
) -> tuple[int, dict[str, Any], float]:
    """Status, headers (and the JSON body as ``"body"``) and seconds taken."""
    started = time.perf_counter()
    async with http.request(
        method, url, json=body, headers={"Authorization": f"Bearer {key}"}
    ) as resp:
        payload = await resp.json(content_type=None)
        return resp.status, {**resp.headers, "body": payload}, time.perf_counter() - started


async def test_routes_answer_503_fast_while_the_database_is_down_and_recover_after(
    own_postgres: PostgresServer, upstream: FakeUpstream
) -> None:
    url = await create_database(own_postgres)
    async with (
        serve(url, upstream, guard={"enabled": False}) as server,
        aiohttp.ClientSession() as http,
    ):
        tenant = server.api_key
        made = await request(http, "POST", f"{server.v1}/collections", tenant, {"name": "docs"})
        assert made[0] == 201
        upload = await request(
            http, "POST", f"{server.v1}/collections/docs/documents", tenant, {"text": "hello"}
        )
        assert upload[0] == 202
        routes: list[tuple[str, str, str, Any]] = [
            ("POST", f"{server.v1}/collections/docs/documents", tenant, {"text": "again"}),
            ("POST", f"{server.v1}/collections/docs/search", tenant, {"query": "hello"}),
            ("GET", f"{server.v1}/collections/docs", tenant, None),
            ("GET", f"{server.v1}/jobs/00000000-0000-0000-0000-000000000000", tenant, None),
            ("GET", f"{server.v1}/logs", ADMIN, None),
        ]

        await asyncio.to_thread(own_postgres.stop)
        for method, route, key, body in routes:
            status, headers, seconds = await request(http, method, route, key, body)
            assert status == 503, (route, status)
            assert int(headers["Retry-After"]) >= 1
            # The bound (before: a 30 s hang, then a 500); the acquire timeout is 1.5 s.
            assert seconds < 2.0 + 1.0, (route, seconds)
        feed = f"{server.url.replace('http', 'ws')}/v1/jobs/{upload[1]['body']['job_id']}/events"
        async with http.ws_connect(feed, headers={"Authorization": f"Bearer {tenant}"}) as ws:
            message = await ws.receive_json(timeout=10)
            closing = await ws.receive(timeout=10)
        assert message["error"]["code"] == "database_unavailable"
        assert (closing.type, closing.data) == (aiohttp.WSMsgType.CLOSE, 4503)

        await restart_postgres(own_postgres)
        back = time.perf_counter()
        for method, route, key, body in routes:
            while True:
                status, _, _ = await request(http, method, route, key, body)
                if status != 503:
                    break
                assert time.perf_counter() - back < 30.0, route
                await asyncio.sleep(0.1)
            assert status in (200, 202, 404), (route, status)  # the job id is not one
        recovered = time.perf_counter() - back
        # The issue asks for 5 s; a loaded CI machine gets some slack.
        assert recovered < 10.0, recovered
        print(f"database back: every route served again after {recovered:.2f} s")
