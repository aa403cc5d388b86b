"""A number of 2^64 or more is never a 5xx: stored in a JSON field, it is read back as the
float it was sent as; given as a limit or a budget, it is a 400 naming the field, as is any
number there that is not a sane whole one."""

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


# Each number a field refuses: not a number, not whole, or out of its range.
NUMBERS = [b"1e40", b"true", b'"7"', b"-3", b"9007199254740993"]
REFUSED = {
    ("limits", "rpm"): [*NUMBERS, b"1.9", b"0"],
    ("limits", "tpm"): [*NUMBERS, b"1.9", b"0"],
    ("budget", "tokens"): [*NUMBERS, b"1.9"],
    ("budget", "cost_usd"): NUMBERS,
}


async def test_a_limit_or_budget_that_is_not_a_sane_number_is_a_400_naming_it(
    server: AppServer,
) -> None:
    for (policy, field), numbers in REFUSED.items():
        for number in numbers:
            value = b'{"%s": {"%s": %s}}' % (policy.encode(), field.encode(), number)
            for path, body in (
                ("/admin/tenants", b'{"name": "t", %s}' % value[1:-1]),
                ("/admin/keys", b'{"tenant": "t", "name": "k", %s}' % value[1:-1]),
            ):
                refused = await call(
                    server,
                    "POST",
                    path,
                    key=ADMIN,
                    data=body,
                    headers={"Content-Type": "application/json"},
                )
                assert refused.status == 400, (body, refused.body)
                assert refused.body["error"]["param"] == f"{policy}.{field}", refused.body
    tenants = await call(server, "GET", "/admin/tenants", key=ADMIN)
    assert [t["name"] for t in tenants.body["data"]] == ["test"]  # nothing created


async def test_an_integral_float_is_a_whole_number_of_a_limit(server: AppServer) -> None:
    made = await call(
        server,
        "POST",
        "/admin/tenants",
        key=ADMIN,
        json={"name": "t", "limits": {"rpm": 60.0, "tpm": 1e5}, "budget": {"tokens": 2.0**53}},
    )
    assert made.status == 201, made.body
    assert made.body["limits"] == {"rpm": 60, "tpm": 100_000}
    assert made.body["budget"] == {"period": "month", "tokens": 2**53}


async def test_a_huge_limit_stored_before_the_check_is_listed_as_no_more_than_2_to_the_53(
    server: AppServer,
) -> None:
    """Rows written before limits were checked: listing them never fails."""
    database = server.app.state.services.database
    async with database.connection() as conn:
        await conn.execute(
            "INSERT INTO tenants (name, limits, budget) VALUES "
            """('old', '{"rpm": 1e40, "tpm": true}', '{"tokens": 1e40, "cost_usd": 1e40}')"""
        )
    tenants = await call(server, "GET", "/admin/tenants", key=ADMIN)
    assert tenants.status == 200, tenants.body
    (old,) = [t for t in tenants.body["data"] if t["name"] == "old"]
    assert old["limits"] == {"rpm": 2**53, "tpm": 1}
    assert old["budget"] == {"period": "month", "tokens": 2**53, "cost_usd": 1e40}
