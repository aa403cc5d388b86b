"""`GET /v1/stats/prompt-versions` compares the versions of a prompt, feedback included."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from propylon.db.database import Database
from propylon.observe.request_log import RequestLog
from propylon.observe.stats import prompt_versions
from propylon.principal import Principal
from propylon.testing import Behaviour, FakeUpstream, Fault
from tests.integration.observe.support import call, chat, record, records, serve


async def test_versions_are_compared_and_feedback_moves_a_versions_score(
    database_url: str, upstream: FakeUpstream
) -> None:
    v1 = {"prompt_name": "support", "prompt_version": "v1"}
    v2 = {"prompt_name": "support", "prompt_version": "v2"}
    async with serve(database_url, upstream) as server:
        for question in ("one", "two", "three"):
            assert (await chat(server, f"v1 {question}", metadata=v1)).status == 200
        liked = await chat(server, "v2 question", metadata=v2)
        upstream.set_behaviour(Behaviour(faults=(Fault(kind="status", status=500),)))
        assert (await chat(server, "v2 fails", metadata=v2)).status == 502
        upstream.set_behaviour(Behaviour())
        await chat(server, "unlabelled")
        rows = await records(server, 6, "origin=user")

        before = await call(server, "GET", "/v1/stats/prompt-versions?window=1h")
        for score in ("up", 0.5):
            posted = await call(
                server,
                "POST",
                "/v1/feedback",
                json={"request_id": liked.headers["x-request-id"], "score": score},
            )
            assert posted.status == 201, posted.body
        after = await call(server, "GET", "/v1/stats/prompt-versions?window=1h&prompt_name=support")
        stats = await call(server, "GET", "/v1/stats?window=1h")

    assert before.status == after.status == 200, (before.body, after.body)
    by_version = {v["prompt_version"]: v for v in before.body["data"]}
    assert set(by_version) == {"v1", "v2"}, "unlabelled requests are not a version"
    first, second = by_version["v1"], by_version["v2"]
    assert (first["requests"], second["requests"]) == (3, 2)
    assert (first["error_rate"], second["error_rate"]) == (0.0, 0.5)
    latencies = [r["latency_ms"] for r in rows if (r["metadata"] or {}) == v1]
    assert first["latency_ms_p95"] == pytest.approx(float(np.percentile(latencies, 95)), 1e-4)
    tokens = [r["completion_tokens"] for r in rows if (r["metadata"] or {}) == v1]
    assert first["completion_tokens_per_request"] == pytest.approx(sum(tokens) / 3)
    assert second["feedback_score"] is None and second["feedback_count"] == 0

    moved = {v["prompt_version"]: v for v in after.body["data"]}["v2"]
    assert (moved["feedback_count"], moved["feedback_score"]) == (2, pytest.approx(0.75))
    minute = stats.body["per_minute"][-1]
    assert minute["latency_ms_p95"] is not None and "cost_saved_usd" in minute


async def test_a_prompts_versions_come_with_time_series_whose_buckets_add_up(
    database: Database,
) -> None:
    """Six hours of two versions, written straight into the log: each version's series has
    one point per 12-minute bucket it was used in, and the points add up to its totals."""
    now = datetime.now(UTC)
    log = RequestLog(database)
    for hour in range(6):
        for version, latency in (("v1", 100.0), ("v2", 300.0)):
            for n in range(hour + 1):
                log.submit(
                    record(
                        f"series-{version}-{hour}-{n}",
                        created_at=(now - timedelta(hours=hour, minutes=5)).timestamp(),
                        tenant_id="series",
                        latency_ms=latency + n,
                        metadata={"prompt_name": "faq", "prompt_version": version},
                    )
                )
    await log.flush()
    reader = Principal(tenant_id="series", tenant_name="series", key_id="k")

    compared = await prompt_versions(
        database, reader, timedelta(hours=6), prompt_name="faq", now=now
    )
    totals = await prompt_versions(database, reader, timedelta(hours=6), now=now)

    assert compared["step_s"] == 720.0
    assert "series" not in totals["data"][0], "only one prompt's versions come with series"
    for version in compared["data"]:
        series = version["series"]
        assert len(series) == 6
        assert [p["time"] for p in series] == sorted(p["time"] for p in series)
        assert sum(p["requests"] for p in series) == version["requests"] == 21
        assert all(p["latency_ms_p50"] <= p["latency_ms_p95"] for p in series)
    v1, v2 = compared["data"]
    assert v1["series"][-1]["latency_ms_p95"] < v2["series"][-1]["latency_ms_p95"]
