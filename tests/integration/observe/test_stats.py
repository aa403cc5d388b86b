"""`GET /v1/stats` agrees with the records of a known set of requests."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from propylon.testing import Behaviour, FakeUpstream, Fault
from tests.integration.observe.support import ADMIN, call, chat, records, serve, upload
from tests.support.job_rig import IN_PROCESS


def percentiles(values: list[float], points: tuple[int, ...]) -> dict[str, float]:
    # PostgreSQL's percentile_cont interpolates linearly, like numpy's default.
    return {f"p{p}": float(np.percentile(values, p)) for p in points}


def assert_close(actual: dict[str, Any], expected: dict[str, float]) -> None:
    assert actual == {k: pytest.approx(v, rel=1e-4) for k, v in expected.items()}


async def test_stats_agree_with_a_known_set_of_requests(
    database_url: str, upstream: FakeUpstream
) -> None:
    async with serve(database_url, upstream) as server:
        v1, v2 = (
            {"prompt_name": "support", "prompt_version": "v1"},
            {
                "prompt_name": "support",
                "prompt_version": "v2",
            },
        )
        first = await chat(server, "same question", temperature=0, metadata=v1)
        again = await chat(server, "same question", temperature=0, metadata=v1)
        assert again.headers["x-propylon-cache"] == "hit-exact"
        assert (await chat(server, "another one", metadata=v1)).status == 200
        assert (await chat(server, "a v2 question", metadata=v2)).status == 200
        streamed = await chat(
            server,
            "a streamed v2 question",
            metadata=v2,
            stream=True,
            stream_options={"include_usage": True},
        )
        assert (first.status, again.status, streamed.status) == (200, 200, 200)
        upstream.set_behaviour(Behaviour(faults=(Fault(kind="status", status=500),)))
        assert (await chat(server, "this one fails", metadata=v2)).status == 502
        upstream.set_behaviour(Behaviour())

        rows = await records(server, 6)
        reply = await call(server, "GET", "/v1/stats?window=1h")
        other_key, _ = await server.app.state.services.access.create_key("other")
        others = await call(server, "GET", "/v1/stats?window=1h", key=other_key)
        admin = await call(server, "GET", "/v1/stats?window=1h", key=ADMIN)

    assert reply.status == 200, reply.body
    stats = reply.body
    assert len(rows) == 6
    assert stats["requests"] == 6
    assert stats["requests_per_minute"] == pytest.approx(6 / 60)
    assert sum(m["requests"] for m in stats["per_minute"]) == 6
    assert stats["error_rate"] == pytest.approx(1 / 6)
    assert_close(stats["latency_ms"], percentiles([r["latency_ms"] for r in rows], (50, 95, 99)))
    ttfts = [r["ttft_ms"] for r in rows if r["ttft_ms"] is not None]
    assert len(ttfts) == 1
    assert_close(stats["ttft_ms"], percentiles(ttfts, (50, 95, 99)))

    statuses = [r["cache_status"] for r in rows]
    lookups = sum(s in ("hit-exact", "hit-semantic", "miss") for s in statuses)
    assert stats["cache"]["lookups"] == lookups >= 2
    assert stats["cache"]["exact_hit_rate"] == pytest.approx(statuses.count("hit-exact") / lookups)
    assert stats["tokens"]["prompt"] == sum(r["prompt_tokens"] or 0 for r in rows)
    assert stats["tokens"]["completion"] == sum(r["completion_tokens"] or 0 for r in rows)
    assert stats["cost_usd"] == pytest.approx(sum(r["cost_usd"] or 0 for r in rows))
    assert stats["cost_usd"] > 0

    (by_model,) = stats["by_model"]
    assert (by_model["model"], by_model["requests"]) == ("gpt-test", 6)
    (by_key,) = stats["by_key"]
    assert by_key["requests"] == 6 and server.api_key.startswith(by_key["key_prefix"])
    versions = {g["prompt_version"]: g for g in stats["by_prompt_version"]}
    assert set(versions) == {"v1", "v2"}
    assert (versions["v1"]["requests"], versions["v1"]["error_rate"]) == (3, 0)
    assert versions["v2"]["requests"] == 3
    assert versions["v2"]["error_rate"] == pytest.approx(1 / 3)
    assert versions["v1"]["cache_hit_rate"] == pytest.approx(0.5)
    v1_cost = sum(r["cost_usd"] or 0 for r in rows if r["metadata"]["prompt_version"] == "v1")
    assert versions["v1"]["cost_usd"] == pytest.approx(v1_cost)

    assert others.body["requests"] == 0, "a tenant's stats cover its own requests only"
    assert admin.body["requests"] == 6


async def test_a_malformed_window_is_refused(database_url: str, upstream: FakeUpstream) -> None:
    async with serve(database_url, upstream) as server:
        for window in ("forever", "0m", "90d"):
            reply = await call(server, "GET", f"/v1/stats?window={window}")
            assert reply.status == 400, window
            assert reply.body["error"]["param"] == "window"


async def test_internal_calls_are_recorded_apart_from_user_traffic(
    database_url: str, upstream: FakeUpstream
) -> None:
    jobs = IN_PROCESS
    async with serve(database_url, upstream, jobs=jobs, guard={"enabled": False}) as server:
        created = await call(
            server, "POST", "/v1/collections", json={"name": "kb", "embedding_model": "embed-test"}
        )
        assert created.status == 201, created.body
        accepted = await upload(server, "kb", b"The Eiffel Tower is 330 metres tall.\n" * 50)
        internal = await records(server, 1, "origin=internal")
        assert (await chat(server, "a user's question")).status == 200
        user = await records(server, 3, "origin=user")  # create, upload, chat
        reply = await call(server, "GET", "/v1/stats?window=1h", key=ADMIN)  # every tenant
    assert {r["parent_id"] for r in internal} == {f"job:{accepted['job_id']}"}
    assert {r["endpoint"] for r in internal} == {"embeddings"}
    assert sorted(r["endpoint"] for r in user) == [
        "/v1/collections",
        "/v1/collections/kb/documents",
        "chat",
    ]
    stats = reply.body
    assert stats["requests"] == 3, "user traffic only"
    latencies = [r["latency_ms"] for r in user]
    assert_close(stats["latency_ms"], percentiles(latencies, (50, 95, 99)))
    assert stats["internal"]["requests"] == len(internal)
    assert stats["internal"]["tokens"]["prompt"] > 0
    minutes = stats["per_minute"]
    assert sum(m["requests"] for m in minutes) == 3
    assert sum(m["internal_requests"] for m in minutes) == len(internal)
