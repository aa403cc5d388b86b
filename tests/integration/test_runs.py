"""Background runs: accepted at once, executed by a worker, followed by polling or WebSocket."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from propylon.testing import Behaviour, FakeUpstream
from tests.support.databases import PostgresServer, create_database
from tests.support.servers import AppServer, serve_app
from tests.support.waiting import eventually, finished

TERMINAL = {"succeeded", "failed", "cancelled"}
FAST_JOBS = {
    "in_process_worker": True,
    "lease_s": 2.0,
    "heartbeat_s": 0.3,
    "reap_interval_s": 0.3,
    "poll_interval_s": 0.2,
    "retry_base_s": 0.1,
}


def models(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [
        {
            "name": "gpt-test",
            "deployments": [{"provider": "openai", "base_url": f"{upstream.base_url}/v1"}],
        }
    ]


@pytest.fixture(scope="module")
async def shared_upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
async def shared_app(
    pg_server: PostgresServer, shared_upstream: FakeUpstream
) -> AsyncIterator[AppServer]:
    """One app for the module: starting the whole stack per test would dominate the run."""
    database_url = await create_database(pg_server)
    async with serve_app(
        database_url=database_url, models=models(shared_upstream), jobs=FAST_JOBS
    ) as server:
        yield server


@pytest.fixture
def upstream(shared_upstream: FakeUpstream) -> FakeUpstream:
    shared_upstream.set_behaviour(Behaviour())
    return shared_upstream


@pytest.fixture
def runs_app(shared_app: AppServer, upstream: FakeUpstream) -> AppServer:
    return shared_app


def chat_run(text: str = "tell me a story") -> dict[str, Any]:
    return {
        "type": "chat",
        "request": {"model": "gpt-test", "messages": [{"role": "user", "content": text}]},
    }


async def call(
    server: AppServer, method: str, path: str, body: Any = None, key: str | None = None
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {key or server.api_key}"}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{server.v1}{path}", json=body, headers=headers) as resp,
    ):
        return resp.status, await resp.json()


async def wait_for(
    server: AppServer, run_id: str, states: set[str], key: str | None = None
) -> dict[str, Any]:
    async def fetch() -> dict[str, Any]:
        return (await call(server, "GET", f"/runs/{run_id}", key=key))[1]

    return await finished(fetch, f"run {run_id} to reach {states}", frozenset(states))


async def events(
    server: AppServer, run_id: str, after: int | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Read the run's event feed (all of it, or the first ``limit`` events)."""
    url = f"{server.url.replace('http', 'ws')}/v1/runs/{run_id}/events"
    if after is not None:
        url += f"?last_event_id={after}"
    got: list[dict[str, Any]] = []
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(url, headers={"Authorization": f"Bearer {server.api_key}"}) as ws,
    ):
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            got.append(message.json())
            if limit is not None and len(got) >= limit:
                break
    return got


async def test_a_run_is_accepted_at_once_and_completes_while_the_client_polls(
    runs_app: AppServer,
) -> None:
    status, run = await call(runs_app, "POST", "/runs", chat_run())
    assert status == 202
    assert run["state"] in {"queued", "running"}
    done = await wait_for(runs_app, run["id"], TERMINAL)
    assert done["state"] == "succeeded", done
    output = done["result"]["output"]
    assert output["text"]
    assert done["partial_output"] == output["text"]
    assert done["steps"]["chat"]["state"] == "succeeded"


async def test_the_websocket_gets_ordered_events_that_add_up_to_the_answer(
    runs_app: AppServer,
) -> None:
    _, run = await call(runs_app, "POST", "/runs", chat_run())
    feed = await events(runs_app, run["id"])
    assert [e["id"] for e in feed] == list(range(1, len(feed) + 1)), "ids in order, no gaps"
    kinds = [e["type"] for e in feed]
    assert kinds[0] == "run_started"
    assert kinds[1] == "step_started"
    assert kinds[-2:] == ["step_succeeded", "run_succeeded"]
    tokens = "".join(e["data"]["text"] for e in feed if e["type"] == "token")
    done = await wait_for(runs_app, run["id"], TERMINAL)
    assert tokens == done["result"]["output"]["text"]


async def test_reconnecting_with_the_last_event_id_resumes_with_nothing_lost_or_repeated(
    runs_app: AppServer, upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(Behaviour(completion_tokens=40, tokens_per_second=200))
    _, run = await call(runs_app, "POST", "/runs", chat_run())
    first = await events(runs_app, run["id"], limit=3)
    rest = await events(runs_app, run["id"], after=first[-1]["id"])
    whole = await events(runs_app, run["id"], after=0)
    assert first + rest == whole


async def test_events_resume_across_a_gateway_restart(
    pg_server: PostgresServer, upstream: FakeUpstream
) -> None:
    database_url = await create_database(pg_server)
    settings: dict[str, Any] = {
        "database_url": database_url,
        "models": models(upstream),
        "jobs": FAST_JOBS,
    }
    async with serve_app(**settings) as before:
        _, run = await call(before, "POST", "/runs", chat_run())
        await wait_for(before, run["id"], TERMINAL)
        seen = await events(before, run["id"], limit=2)
    async with serve_app(**settings) as after:
        # A key of the same tenant: the first server's key still works on the second.
        after_view = AppServer(after.url, after.settings, before.api_key, after.app)
        rest = await events(after_view, run["id"], after=seen[-1]["id"])
        whole = await events(after_view, run["id"], after=0)
    assert seen + rest == whole
    assert whole[-1]["type"] == "run_succeeded"


async def test_cancel_stops_a_run_in_the_middle_of_generation(
    runs_app: AppServer, upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(Behaviour(completion_tokens=400, tokens_per_second=40))  # ~10 s
    _, run = await call(runs_app, "POST", "/runs", chat_run())
    head = await events(runs_app, run["id"], limit=4)  # generation has begun
    assert any(e["type"] == "token" for e in head)
    status, cancelled = await call(runs_app, "POST", f"/runs/{run['id']}/cancel")
    assert status == 200
    assert cancelled["state"] == "cancelled"
    feed = await events(runs_app, run["id"])
    assert feed[-1]["type"] == "run_cancelled"
    generated = "".join(e["data"]["text"] for e in feed if e["type"] == "token")
    assert len(generated.split()) < 400, "stopped before the upstream finished"

    # The worker records its step's end after the terminal event: wait for it, then look.
    async def step_ended() -> dict[str, Any] | None:
        view = (await call(runs_app, "GET", f"/runs/{run['id']}"))[1]
        return view if all(s["state"] != "running" for s in view["steps"].values()) else None

    view = await eventually(step_ended, "the cancelled run's step to end")
    assert [step["state"] for step in view["steps"].values()] == ["cancelled"]


async def test_a_chain_passes_outputs_between_steps(runs_app: AppServer) -> None:
    chain = {
        "type": "chain",
        "steps": [
            {
                "name": "first",
                "kind": "model",
                "request": {
                    "model": "gpt-test",
                    "messages": [{"role": "user", "content": "alpha"}],
                },
            },
            {
                "name": "second",
                "kind": "model",
                "request": {
                    "model": "gpt-test",
                    "messages": [{"role": "user", "content": "Echo {{steps.first.text}}"}],
                },
            },
        ],
    }
    _, run = await call(runs_app, "POST", "/runs", chain)
    done = await wait_for(runs_app, run["id"], TERMINAL)
    assert done["state"] == "succeeded", done
    assert set(done["steps"]) == {"first", "second"}
    sent = done["result"]["steps"]["first"]["text"]
    assert sent


async def test_a_step_that_times_out_fails_the_run_with_its_reason(
    runs_app: AppServer, upstream: FakeUpstream
) -> None:
    upstream.set_behaviour(Behaviour(latency_ms=3000))
    body = chat_run()
    body = {
        "type": "chain",
        "steps": [
            {
                "name": "slow",
                "kind": "model",
                "request": body["request"],
                "timeout_s": 0.3,
                "retries": 1,
            },
        ],
    }
    _, run = await call(runs_app, "POST", "/runs", body)
    done = await wait_for(runs_app, run["id"], TERMINAL)
    assert done["state"] == "failed"
    assert "timed out" in done["error"]
    feed = await events(runs_app, run["id"])
    assert "step_retry" in [e["type"] for e in feed], "retried once before failing"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"type": "dance"}, "type"),
        ({"type": "chat"}, "request"),
        ({"type": "chain", "steps": []}, "steps"),
        ({"type": "chain", "steps": [{"name": "a", "kind": "teleport"}]}, "steps[0].kind"),
        ({"type": "chain", "steps": [{"name": "a", "kind": ["search"]}]}, "steps[0].kind"),
        ({"type": "chat", "request": {"model": "gpt-test", "messages": "hi"}}, "request.messages"),
        (
            {
                "type": "chat",
                "request": {"model": "gpt-test", "messages": [{"role": ["user"], "content": "hi"}]},
            },
            "request.messages[0].role",
        ),
        (
            {
                "type": "chain",
                "steps": [
                    {"name": "s", "kind": "search", "collection": "c", "query": "q", "top_k": "ten"}
                ],
            },
            "steps[0].top_k",
        ),
        (
            {
                "type": "chain",
                "steps": [
                    {
                        "name": "s",
                        "kind": "search",
                        "collection": "c",
                        "query": "q",
                        "mode": "psychic",
                    }
                ],
            },
            "steps[0].mode",
        ),
        ({"type": "chain", "steps": [{"name": "a", "kind": "guard"}]}, "steps[0].text"),
        (
            {"type": "chain", "steps": [{"name": "v", "kind": "verify_citations", "step": "x"}]},
            "steps[0].step",
        ),
        (
            {
                "type": "chain",
                "steps": [{"name": "g", "kind": "guard", "text": "t", "retries": 2.5}],
            },
            "steps[0].retries",
        ),
        (
            {
                "type": "agent",
                "model": "gpt-test",
                "input": "hi",
                "tools": [],
                "limits": {"max_steps": 2.5},
            },
            "limits.max_steps",
        ),
    ],
)
async def test_a_malformed_run_is_refused_with_a_clear_error(
    runs_app: AppServer, body: dict[str, Any], param: str
) -> None:
    status, error = await call(runs_app, "POST", "/runs", body)
    assert status == 400
    assert error["error"]["param"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat_run() | {"request": {**chat_run()["request"], "model": "gpt-nope"}}, "request.model"),
        ({"type": "agent", "model": "gpt-nope", "input": "hi", "tools": []}, "model"),
        (
            {
                "type": "chain",
                "steps": [
                    {
                        "name": "m",
                        "kind": "model",
                        "request": {
                            "model": "gpt-nope",
                            "messages": [{"role": "user", "content": "hi"}],
                        },
                    }
                ],
            },
            "steps[0].request.model",
        ),
    ],
)
async def test_a_run_on_a_model_not_configured_is_refused_at_once(
    runs_app: AppServer, body: dict[str, Any], param: str
) -> None:
    """A 404 naming the model, not a 202 and a run that fails later."""
    status, error = await call(runs_app, "POST", "/runs", body)
    assert status == 404, error
    assert (error["error"]["code"], error["error"]["param"]) == ("model_not_found", param)


async def test_a_step_with_null_timeout_and_retries_runs_with_the_defaults(
    runs_app: AppServer,
) -> None:
    step = {"name": "s", "kind": "model", "request": chat_run()["request"]}
    body = {"type": "chain", "steps": [step | {"timeout_s": None, "retries": None}]}
    status, run = await call(runs_app, "POST", "/runs", body)
    assert status == 202, run
    done = await wait_for(runs_app, run["id"], TERMINAL)
    assert done["state"] == "succeeded", done


async def test_another_tenants_run_is_not_found(runs_app: AppServer) -> None:
    _, run = await call(runs_app, "POST", "/runs", chat_run())
    other, _ = await runs_app.app.state.services.access.create_key("someone-else")
    status, error = await call(runs_app, "GET", f"/runs/{run['id']}", key=other)
    assert status == 404
    assert error["error"]["code"] == "run_not_found"
    status, _ = await call(runs_app, "GET", "/runs/not-a-uuid")
    assert status == 404


async def test_the_event_feed_refuses_another_tenants_run_and_a_bad_event_id(
    runs_app: AppServer,
) -> None:
    _, run = await call(runs_app, "POST", "/runs", chat_run())
    other, _ = await runs_app.app.state.services.access.create_key("feed-stranger")
    base = f"{runs_app.url.replace('http', 'ws')}/v1/runs/{run['id']}/events"
    for url, key, code in (
        (base, other, 4404),
        (f"{base}?last_event_id=minus-one", runs_app.api_key, 4400),
        (f"{base}?last_event_id=%C2%B2", runs_app.api_key, 4400),  # "²": isdigit(), no int()
        (f"{base}?last_event_id=2147483648", runs_app.api_key, 4400),  # past `integer`
    ):
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(url, headers={"Authorization": f"Bearer {key}"}) as ws,
        ):
            message = await ws.receive_json()
            closing = await ws.receive()
        assert message["type"] == "error"
        assert message["error"]["type"] == "invalid_request_error"
        assert closing.type == aiohttp.WSMsgType.CLOSE
        assert closing.data == code


async def test_a_run_over_another_tenants_or_an_unknown_collection_is_not_found(
    runs_app: AppServer,
) -> None:
    """A 404 at once, not a 202 and a run that fails later."""
    services = runs_app.app.state.services
    owner, record = await services.access.create_key("collection-owner")
    tenant = record.principal().tenant_id
    theirs = await services.collections.create(tenant, name="private-docs")
    for ref in (str(theirs["id"]), "private-docs", "no-such-collection"):
        answer = {"type": "answer", "collection": ref, "question": "what is inside?"}
        status, error = await call(runs_app, "POST", "/runs", answer)
        assert status == 404, error
        assert error["error"]["param"] == "collection"
        search = {
            "type": "chain",
            "steps": [{"name": "look", "kind": "search", "collection": ref, "query": "q"}],
        }
        status, error = await call(runs_app, "POST", "/runs", search)
        assert status == 404, error
        assert error["error"]["param"] == "steps[0].collection"
    mine = {"type": "answer", "collection": "private-docs", "question": "what is inside?"}
    status, run = await call(runs_app, "POST", "/runs", mine, key=owner)
    assert status == 202, run  # the owner's own collection is accepted


async def test_an_answer_run_takes_the_answer_apis_options(
    runs_app: AppServer, upstream: FakeUpstream
) -> None:
    """`model`, `top_k`, `mode` and `filter` as `POST /v1/collections/{id}/answer` takes
    them: a `model` was ignored (the answer came from `local/extractive`)."""
    services = runs_app.app.state.services
    key, record = await services.access.create_key("answer-options")
    tenant = record.principal().tenant_id
    await services.collections.create(tenant, name="manual")
    accepted = await services.collections.add_document(
        tenant, "manual", content=b"The pump primes in forty seconds.", filename="pump.txt"
    )

    async def job_view() -> dict[str, Any]:
        view: dict[str, Any] = (await services.jobs.get(tenant, accepted.job_id)).to_dict()
        return view

    job = await finished(job_view, "the manual to be ingested")
    assert job["state"] == "succeeded", job
    question = "How long does the pump take to prime?"
    body = {"type": "answer", "collection": "manual", "question": question}
    status, run = await call(runs_app, "POST", "/runs", {**body, "model": "gpt-test"}, key=key)
    assert status == 202, run
    done = await wait_for(runs_app, run["id"], TERMINAL, key)
    assert done["state"] == "succeeded", done
    sent = upstream.last_request("/v1/chat/completions")
    assert sent is not None and question in str(sent.body["messages"]), "gpt-test answered"
    for bad, param in (({"top_k": 0}, "top_k"), ({"mode": "fuzzy"}, "mode")):
        status, error = await call(runs_app, "POST", "/runs", {**body, **bad}, key=key)
        assert status == 400 and error["error"]["param"] == param, error
    scoped, _ = await services.access.create_key("answer-options", models=["local/extractive"])
    status, error = await call(runs_app, "POST", "/runs", {**body, "model": "gpt-test"}, scoped)
    assert status == 403 and error["error"]["param"] == "model", error


def _step(name: str, content: str) -> dict[str, Any]:
    request = {"model": "gpt-test", "messages": [{"role": "user", "content": content}]}
    return {"name": name, "kind": "model", "request": request}


async def test_a_reference_to_no_earlier_step_is_refused_and_to_no_field_fails_the_step(
    runs_app: AppServer,
) -> None:
    """Each became empty text: the run succeeded with an empty prompt."""
    for steps, where in (
        ([_step("a", "{{steps.nope.text}}")], "steps[0]"),
        ([_step("a", "{{steps.b.text}}"), _step("b", "x")], "steps[0]"),  # not yet run
        ([_step("a", "{{steps.a.text}}")], "steps[0]"),
        ([_step("a", "{{steps.input.text}}")], "steps[0]"),  # a chain run has no input
    ):
        status, error = await call(runs_app, "POST", "/runs", {"type": "chain", "steps": steps})
        assert status == 400 and error["error"]["param"] == where, (steps, error)
        assert "names no earlier step" in error["error"]["message"]
    chain = {"type": "chain", "steps": [_step("a", "hi"), _step("b", "{{steps.a.nofield}}")]}
    status, run = await call(runs_app, "POST", "/runs", chain)
    assert status == 202, run
    done = await wait_for(runs_app, run["id"], TERMINAL)
    assert done["state"] == "failed", done
    assert "{{steps.a.nofield}} names no output" in done["error"], done["error"]
    assert "text" in done["error"]


async def test_runs_are_listed_newest_first_page_by_page(runs_app: AppServer) -> None:
    """Only the latest 50 could be seen; `limit` and `after` were ignored."""
    key, _ = await runs_app.app.state.services.access.create_key("paging-runs")
    made = []
    for text in ("one", "two", "three"):
        status, run = await call(runs_app, "POST", "/runs", chat_run(text), key=key)
        assert status == 202, run
        made.append(run["id"])
    status, first = await call(runs_app, "GET", "/runs?limit=2", key=key)
    assert status == 200 and [r["id"] for r in first["data"]] == made[:0:-1], first
    assert first["has_more"] is True and first["last_id"] == made[1]
    status, rest = await call(runs_app, "GET", f"/runs?limit=2&after={first['last_id']}", key=key)
    assert [r["id"] for r in rest["data"]] == [made[0]] and rest["has_more"] is False
    for query, param in (("limit=0", "limit"), (f"after={made[0][:-1]}x", "after")):
        status, error = await call(runs_app, "GET", f"/runs?{query}", key=key)
        assert status in (400, 404) and error["error"]["param"] == param, (query, error)
    status, other = await call(runs_app, "GET", f"/runs?after={made[0]}")  # another tenant
    assert status == 404 and other["error"]["param"] == "after"
