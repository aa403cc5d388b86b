"""`GET /v1/stats/prompt-versions` compares the versions of a prompt, feedback included."""

from __future__ import annotations

import numpy as np
import pytest

from propylon.testing import Behaviour, FakeUpstream, Fault
from tests.integration.observe.support import call, chat, records, serve


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
