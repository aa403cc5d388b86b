"""A number of 2^64 or more stored in a JSON field is never a 5xx: it is read back as the
float it was sent as."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from propylon.testing import FakeUpstream
from tests.integration.observe.support import ADMIN, call, chat, records, serve
from tests.support.servers import AppServer
from tests.support.waiting import eventually, finished

HUGE = 1e20  # orjson reads it as a float; jsonb gives it back as an integer above 2^64
RAW_HUGE = b'{"n": 1e20}'


@pytest.fixture
async def server(database_url: str, upstream: FakeUpstream) -> AsyncIterator[AppServer]:
    jobs = {"in_process_worker": True, "poll_interval_s": 0.2}
    async with serve(database_url, upstream, jobs=jobs) as running:
        yield running


def huge(metadata: dict[str, Any]) -> None:
    assert metadata == {"n": HUGE} and isinstance(metadata["n"], float), metadata


async def test_a_collection_with_a_huge_number_in_its_metadata_is_listed_and_shown(
    server: AppServer,
) -> None:
    made = await call(
        server, "POST", "/v1/collections", json={"name": "big", "metadata": {"n": HUGE}}
    )
    assert made.status == 201, made.body
    huge(made.body["metadata"])

    listed = await call(server, "GET", "/v1/collections")
    assert listed.status == 200, listed.body
    (collection,) = listed.body["data"]
    huge(collection["metadata"])
    shown = await call(server, "GET", "/v1/collections/big")
    assert shown.status == 200, shown.body
    huge(shown.body["metadata"])


async def test_a_chat_with_a_huge_number_in_its_metadata_is_logged_shown_and_exported(
    server: AppServer,
) -> None:
    reply = await chat(server, metadata={"n": HUGE})
    assert reply.status == 200, reply.body
    request_id = reply.headers["x-request-id"]

    (listed,) = await records(server, 1)  # GET /v1/logs answers 200
    huge(listed["metadata"])
    shown = await call(server, "GET", f"/v1/logs/{request_id}", key=ADMIN)
    assert shown.status == 200, shown.body
    huge(shown.body["metadata"])
    exported = await call(server, "GET", "/v1/logs/export?format=jsonl", key=ADMIN)
    assert exported.status == 200, exported.body
    huge(exported.body["metadata"])  # the file's one line


async def test_feedback_with_a_huge_number_in_its_metadata_is_shown_with_its_request(
    server: AppServer,
) -> None:
    reply = await chat(server)
    request_id = reply.headers["x-request-id"]
    posted = await call(
        server,
        "POST",
        "/v1/feedback",
        data=b'{"request_id": "%s", "score": 1, "metadata": %s}' % (request_id.encode(), RAW_HUGE),
        headers={"Content-Type": "application/json"},
    )
    assert posted.status == 201, posted.body

    async def shown() -> dict[str, Any] | None:
        detail = await call(server, "GET", f"/v1/logs/{request_id}", key=ADMIN)
        if detail.status == 404:
            return None  # not written yet
        assert detail.status == 200, detail.body
        return dict(detail.body)

    (feedback,) = (await eventually(shown, f"the record of {request_id}"))["feedback"]
    huge(feedback["metadata"])


async def test_a_chat_run_with_a_huge_number_in_its_metadata_succeeds(server: AppServer) -> None:
    request = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"n": HUGE},
    }
    accepted = await call(server, "POST", "/v1/runs", json={"type": "chat", "request": request})
    assert accepted.status == 202, accepted.body

    async def fetch() -> dict[str, Any]:
        return dict((await call(server, "GET", f"/v1/runs/{accepted.body['id']}")).body)

    done = await finished(fetch, "the run to end")
    assert done["state"] == "succeeded", done
