"""The guard's model work for a job is recorded apart (``origin: internal``, for the job it
served); the guard of a request runs inside it and is timed in the request's own record. The
guard's model is the local MiniLM: nothing billed (no tokens, no cost); an internal record
shows the time and how many windows of which kind of text were embedded."""

from __future__ import annotations

from propylon.guard.detector import GUARD_MODEL
from propylon.testing import FakeUpstream
from tests.integration.observe.support import ADMIN, call, chat, records, serve, upload
from tests.support.job_rig import IN_PROCESS


async def test_the_guard_of_a_request_is_timed_in_the_requests_own_record(
    database_url: str, upstream: FakeUpstream
) -> None:
    async with serve(database_url, upstream) as server:
        asked = await chat(server, "Which river runs through the city of Lyon?")
        assert asked.status == 200, asked.body
        [user] = await records(server, 1, "origin=user")
        # Submitted before the request's own record, had there been one.
        internal = await records(server, 0, "origin=internal")
        stats = (await call(server, "GET", "/v1/stats?window=1h", key=ADMIN)).body
    assert user["request_id"] == asked.headers["x-request-id"]
    assert user["guard"]["action"] == "pass" and user["guard"]["ms"] > 0
    assert internal == [], "the request waited for its guard: its time, not internal traffic"
    assert stats["requests"] == 1 and stats["internal"]["requests"] == 0


async def test_the_screening_of_an_ingested_document_is_recorded_for_its_job(
    database_url: str, upstream: FakeUpstream
) -> None:
    jobs = IN_PROCESS
    async with serve(database_url, upstream, jobs=jobs) as server:
        created = await call(
            server, "POST", "/v1/collections", json={"name": "kb", "embedding_model": "embed-test"}
        )
        assert created.status == 201, created.body
        accepted = await upload(server, "kb", b"The Eiffel Tower is 330 metres tall.\n" * 50)
        [screened] = await records(server, 1, f"origin=internal&model={GUARD_MODEL}")
    assert screened["parent_id"] == f"job:{accepted['job_id']}"
    assert screened["metadata"]["guard"] == "retrieved"
    assert screened["metadata"]["windows"] >= 1
    assert screened["tenant_id"] is not None
    assert screened["prompt_tokens"] is None and screened["cost_usd"] is None  # not billed
    assert screened["status"] == 200 and screened["latency_ms"] > 0
