"""The embeddings of a document a key uploaded are charged to that key's budget, or not, as
`access.internal_counts_against_budget` says; either way they are its usage's internal series."""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from propylon.testing import FakeUpstream
from tests.integration.observe.support import ADMIN, call, make_collection, serve
from tests.support.job_rig import IN_PROCESS
from tests.support.waiting import finished

TEXT = b"The Eiffel Tower is 330 metres tall and was finished in 1889.\n" * 40


@pytest.mark.parametrize("counted", [True, False], ids=["counted", "not-counted"])
async def test_an_uploads_embeddings_are_charged_to_the_uploaders_budget_when_configured(
    database_url: str, upstream: FakeUpstream, counted: bool
) -> None:
    jobs = IN_PROCESS
    async with serve(
        database_url,
        upstream,
        jobs=jobs,
        guard={"enabled": False},
        access={"internal_counts_against_budget": counted},
    ) as server:
        budget = {"period": "day", "tokens": 20}  # far less than the document's embeddings
        created = await call(
            server, "POST", "/admin/keys", key=ADMIN, json={"tenant": "kb", "budget": budget}
        )
        key, key_id = created.body["key"], created.body["id"]
        await make_collection(server, key)
        form = aiohttp.FormData()
        form.add_field("file", TEXT, filename="tower.txt")
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{server.v1}/collections/kb/documents",
                data=form,
                headers={"Authorization": f"Bearer {key}"},
            ) as resp,
        ):
            accepted: dict[str, Any] = await resp.json()
        assert resp.status == 202, accepted

        async def job() -> dict[str, Any]:
            reply = await call(server, "GET", f"/v1/jobs/{accepted['job_id']}", key=key)
            body: dict[str, Any] = reply.body
            return body

        view = await finished(job, "the ingestion job")
        usage = await call(server, "GET", f"/admin/keys/{key_id}/usage", key=ADMIN)
    print(f"counted={counted}: job {view['state']}: {view['reason']}")
    if counted:
        assert view["state"] == "failed"
        assert "internal_counts_against_budget" in str(view["reason"]), view
        assert usage.body["days"] == [] or usage.body["days"][0]["internal"]["prompt_tokens"] <= 20
    else:
        assert view["state"] == "succeeded", view
        [today] = usage.body["days"]
        assert today["internal"]["prompt_tokens"] > 20, "recorded, just not held to the budget"
        assert today["prompt_tokens"] == 0, "no user traffic"
