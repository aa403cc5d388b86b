"""Keys, scopes, rate limits and budgets, seen from a client of the real HTTP API.

Every refusal is checked for its documented status and OpenAI shape:
401 missing/unknown key, 403 revoked or out of scope, 429 `rate_limit_exceeded` with
`Retry-After` and `x-ratelimit-*`, 429 `insufficient_quota` before any upstream call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import psycopg
import pytest

from propylon.access.keys import generate_key, new_secret
from propylon.testing import Behaviour, FakeUpstream
from tests.support.servers import AppServer, serve_app

ADMIN = "admin-secret-for-tests"
HELLO = [{"role": "user", "content": "hello there"}]


def models(upstream: FakeUpstream) -> list[dict[str, Any]]:
    base = f"{upstream.base_url}/v1"
    return [
        {
            "name": "gpt-test",
            "aliases": ["gpt-alias"],
            "deployments": [{"provider": "openai", "base_url": base, "model": "fake-gpt"}],
        },
        {
            "name": "gpt-other",
            "deployments": [{"provider": "openai", "base_url": base, "model": "fake-gpt"}],
        },
        {
            "name": "embed-test",
            "kind": "embeddings",
            "deployments": [{"provider": "openai", "base_url": base, "model": "fake-embedding"}],
        },
    ]


@pytest.fixture
async def server(database_url: str, upstream: FakeUpstream) -> AsyncIterator[AppServer]:
    async with serve_app(
        database_url=database_url,
        models=models(upstream),
        admin_key=ADMIN,
        observe={"prices": {"gpt-test": {"input": 1000.0, "output": 2000.0}}},
    ) as running:
        yield running


class Reply:
    def __init__(self, status: int, headers: dict[str, str], body: Any) -> None:
        self.status, self.headers, self.body = status, headers, body

    @property
    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = self.body["error"]
        return error


async def request(
    server: AppServer,
    method: str,
    path: str,
    *,
    key: str | None = None,
    json: Any = None,
) -> Reply:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    async with (
        aiohttp.ClientSession() as http,
        http.request(method, f"{server.url}{path}", json=json, headers=headers) as resp,
    ):
        body = await resp.json(content_type=None)
        return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, body)


async def chat(server: AppServer, key: str | None, **fields: Any) -> Reply:
    body = {"model": "gpt-test", "messages": HELLO, **fields}
    return await request(server, "POST", "/v1/chat/completions", key=key, json=body)


async def new_key(server: AppServer, tenant: str = "acme", **spec: Any) -> str:
    reply = await request(server, "POST", "/admin/keys", key=ADMIN, json={"tenant": tenant, **spec})
    assert reply.status == 201, reply.body
    key: str = reply.body["key"]
    return key


def assert_openai_error(reply: Reply, status: int, error_type: str, code: str) -> None:
    assert reply.status == status, reply.body
    assert set(reply.error) == {"message", "type", "param", "code"}
    assert (reply.error["type"], reply.error["code"]) == (error_type, code)
    assert reply.error["message"]


# -- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/chat/completions", {"model": "gpt-test", "messages": HELLO}),
        ("POST", "/v1/embeddings", {"model": "embed-test", "input": "hi"}),
        ("GET", "/v1/models", None),
    ],
)
async def test_every_v1_endpoint_requires_a_key(
    server: AppServer, method: str, path: str, body: Any
) -> None:
    reply = await request(server, method, path, json=body)
    assert_openai_error(reply, 401, "invalid_request_error", "missing_api_key")


@pytest.mark.parametrize(
    "key", [generate_key(new_secret()), "ppl_not-a-real-key", "sk-1234567890", "Bearer", "x" * 5000]
)
async def test_an_unknown_or_malformed_key_gets_401(
    server: AppServer, upstream: FakeUpstream, key: str
) -> None:
    reply = await chat(server, key)
    assert_openai_error(reply, 401, "invalid_request_error", "invalid_api_key")
    assert upstream.calls.get("/v1/chat/completions", 0) == 0


async def test_a_valid_key_is_served(server: AppServer) -> None:
    reply = await chat(server, server.api_key)
    assert reply.status == 200, reply.body
    assert reply.body["choices"][0]["message"]["content"]


async def test_a_revoked_key_gets_403_at_once(server: AppServer) -> None:
    key = await new_key(server, name="soon-gone")
    assert (await chat(server, key)).status == 200
    revoked = await request(server, "POST", "/admin/keys/soon-gone/revoke", key=ADMIN)
    assert revoked.status == 200
    assert revoked.body["revoked_at"] is not None
    reply = await chat(server, key)
    assert_openai_error(reply, 403, "permission_error", "api_key_revoked")


# -- scopes ---------------------------------------------------------------------------------


async def test_a_key_reaches_only_its_models_by_name_or_alias(server: AppServer) -> None:
    key = await new_key(server, models=["gpt-test"])
    assert (await chat(server, key)).status == 200
    assert (await chat(server, key, model="gpt-alias")).status == 200
    reply = await chat(server, key, model="gpt-other")
    assert_openai_error(reply, 403, "permission_error", "model_not_allowed")
    assert reply.error["param"] == "model"
    listed = await request(server, "GET", "/v1/models", key=key)
    ids = {m["id"] for m in listed.body["data"]}
    assert "gpt-test" in ids and not ids & {"gpt-other", "embed-test"}, "only what it may use"
    assert "local/extractive" in ids, "local models are open to every key"
    one = await request(server, "GET", "/v1/models/gpt-other", key=key)
    assert_openai_error(one, 403, "permission_error", "model_not_allowed")
    everything = await request(server, "GET", "/v1/models", key=await new_key(server))
    assert {m["id"] for m in everything.body["data"]} >= {"gpt-test", "gpt-other", "embed-test"}


async def test_a_key_reaches_only_its_features(server: AppServer) -> None:
    key = await new_key(server, features=["embeddings"])
    reply = await chat(server, key)
    assert_openai_error(reply, 403, "permission_error", "feature_not_allowed")
    embedded = await request(
        server, "POST", "/v1/embeddings", key=key, json={"model": "embed-test", "input": "hi"}
    )
    assert embedded.status == 200, embedded.body


async def test_an_unknown_model_is_still_a_404_for_a_scoped_key(server: AppServer) -> None:
    key = await new_key(server, models=["gpt-test"])
    reply = await chat(server, key, model="nope")
    assert_openai_error(reply, 404, "invalid_request_error", "model_not_found")


# -- the admin API --------------------------------------------------------------------------


async def test_admin_endpoints_refuse_callers_without_the_admin_key(server: AppServer) -> None:
    missing = await request(server, "GET", "/admin/keys")
    assert_openai_error(missing, 401, "invalid_request_error", "missing_api_key")
    wrong = await request(server, "GET", "/admin/keys", key="admin-secret-for-test")
    assert_openai_error(wrong, 401, "invalid_request_error", "invalid_api_key")
    for method, path in [
        ("GET", "/admin/keys"),
        ("GET", "/admin/tenants"),
        ("POST", "/admin/tenants"),
        ("POST", "/admin/keys"),
        ("POST", "/admin/keys/anything/revoke"),
        ("GET", "/admin/keys/anything/usage"),
    ]:
        reply = await request(server, method, path, key=server.api_key, json={"name": "x"})
        assert_openai_error(reply, 403, "permission_error", "admin_required")


async def test_a_key_with_the_operator_feature_may_administer(server: AppServer) -> None:
    operator_key = await new_key(server, features=["operator"])
    reply = await request(server, "POST", "/admin/tenants", key=operator_key, json={"name": "new"})
    assert reply.status == 201, reply.body


async def test_tenants_and_keys_are_created_listed_and_used(
    server: AppServer, upstream: FakeUpstream
) -> None:
    made = await request(
        server,
        "POST",
        "/admin/tenants",
        key=ADMIN,
        json={"name": "globex", "limits": {"rpm": 100}, "budget": {"tokens": 10_000}},
    )
    assert made.status == 201
    assert made.body["limits"] == {"rpm": 100}
    again = await request(server, "POST", "/admin/tenants", key=ADMIN, json={"name": "globex"})
    assert_openai_error(again, 400, "invalid_request_error", "tenant_exists")

    created = await request(
        server,
        "POST",
        "/admin/keys",
        key=ADMIN,
        json={"tenant": "globex", "name": "ci", "models": ["gpt-test"], "limits": {"tpm": 5000}},
    )
    assert created.status == 201
    key = created.body["key"]
    assert created.body["prefix"] == key[:12]
    assert created.body["features"] == ["chat", "embeddings", "rag"]

    listed = await request(server, "GET", "/admin/keys?tenant=globex", key=ADMIN)
    assert [k["name"] for k in listed.body["data"]] == ["ci"]
    assert key not in str(listed.body)
    tenants = await request(server, "GET", "/admin/tenants", key=ADMIN)
    assert {"globex", "test"} <= {t["name"] for t in tenants.body["data"]}

    for _ in range(2):
        assert (await chat(server, key)).status == 200
    usage = await request(server, "GET", f"/admin/keys/{created.body['id']}/usage", key=ADMIN)
    [today] = usage.body["days"]
    assert today["requests"] == 2
    assert today["prompt_tokens"] == 2 * 2  # the fake counts words: "hello there"
    assert today["completion_tokens"] == 2 * 16
    assert today["cost_usd"] == pytest.approx((4 * 1000 + 32 * 2000) / 1e6)


async def test_bad_admin_input_gets_a_400_naming_the_field(server: AppServer) -> None:
    reply = await request(
        server, "POST", "/admin/keys", key=ADMIN, json={"tenant": "a", "features": ["fly"]}
    )
    assert_openai_error(reply, 400, "invalid_request_error", "invalid_request")
    assert reply.error["param"] == "features"
    reply = await request(
        server, "POST", "/admin/keys", key=ADMIN, json={"tenant": "a", "limits": {"rpm": -1}}
    )
    assert reply.error["param"] == "limits.rpm"
    reply = await request(
        server, "POST", "/admin/keys", key=ADMIN, json={"tenant": "a", "name": ["k"]}
    )
    assert reply.error["param"] == "name", "not stored as the text of a list"
    for body, param in (
        ({"tenant": "a", "expires_at": "2027-01-01"}, "expires_at"),
        ({"tenant": "a", "limits": {"rps": 5}}, "limits.rps"),
        ({"tenant": "a", "budget": {"usd": 5}}, "budget.usd"),
    ):  # dropped unread, they left the caller believing the key expires or is limited
        reply = await request(server, "POST", "/admin/keys", key=ADMIN, json=body)
        assert reply.status == 400 and reply.error["param"] == param, (body, reply.body)
    for body, param in (
        ({"tenant": "acme\u202egnp.exe"}, "tenant"),  # shown as "acmeexe.png"
        ({"tenant": "acme", "name": "ci\u200b"}, "name"),
        ({"tenant": "line\nbreak"}, "tenant"),
    ):
        reply = await request(server, "POST", "/admin/keys", key=ADMIN, json=body)
        assert reply.status == 400 and reply.error["param"] == param, (body, reply.body)
    reply = await request(
        server, "POST", "/admin/tenants", key=ADMIN, json={"name": "x", "limit": {"rpm": 1}}
    )
    assert reply.status == 400 and reply.error["param"] == "limit", reply.body
    missing = await request(server, "GET", "/admin/keys/ppl_nothing/usage", key=ADMIN)
    assert_openai_error(missing, 404, "invalid_request_error", "not_found")


async def test_a_key_named_after_another_keys_id_or_prefix_never_shadows_it(
    server: AppServer, database_url: str
) -> None:
    """A tenant admin once stopped an operator from revoking another tenant's key by making a
    key named after its id ("matches 2 keys; use the id")."""
    victim = await request(server, "POST", "/admin/keys", key=ADMIN, json={"tenant": "acme"})
    victim_id, victim_prefix = victim.body["id"], victim.body["prefix"]
    evil_admin = await new_key(server, tenant="evil", features=["admin", "chat"])
    for name in (victim_id, victim_prefix, victim_id.upper()):
        made = await request(server, "POST", "/admin/keys", key=evil_admin, json={"name": name})
        assert made.status == 400 and made.error["param"] == "name", (name, made.body)
    # A key named so before names were checked:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "UPDATE api_keys SET name = %s WHERE id = (SELECT k.id FROM api_keys k "
            "JOIN tenants t ON t.id = k.tenant_id WHERE t.name = 'evil' LIMIT 1)",
            (victim_id,),
        )
    usage = await request(server, "GET", f"/admin/keys/{victim_id}/usage", key=ADMIN)
    assert usage.status == 200, usage.body
    revoked = await request(server, "POST", f"/admin/keys/{victim_id}/revoke", key=ADMIN)
    assert revoked.status == 200 and revoked.body["id"] == victim_id, revoked.body


async def test_a_name_names_one_key_in_use_per_tenant(server: AppServer) -> None:
    """Two keys named `ci` made revoking `ci` impossible ("matches 2 keys"); a name comes
    free again once its key is revoked (rotation), and then names the key in use."""
    body = {"tenant": "rotating", "name": "ci"}
    first = await request(server, "POST", "/admin/keys", key=ADMIN, json=body)
    assert first.status == 201, first.body
    again = await request(server, "POST", "/admin/keys", key=ADMIN, json=body)
    assert_openai_error(again, 409, "invalid_request_error", "key_name_exists")
    elsewhere = await request(
        server, "POST", "/admin/keys", key=ADMIN, json={"tenant": "other-team", "name": "ci"}
    )
    assert elsewhere.status == 201, "names are per tenant"
    revoked = await request(server, "POST", "/admin/keys/ci/revoke", key=ADMIN)
    assert revoked.status == 400, "two tenants have a key named ci: the id says which"
    revoked = await request(server, "POST", f"/admin/keys/{first.body['id']}/revoke", key=ADMIN)
    assert revoked.status == 200
    rotated = await request(server, "POST", "/admin/keys", key=ADMIN, json=body)
    assert rotated.status == 201, rotated.body
    admin = await new_key(server, tenant="rotating", features=["admin"])
    by_name = await request(server, "GET", "/admin/keys/ci/usage", key=admin)
    assert by_name.status == 200 and by_name.body["key"]["id"] == rotated.body["id"], by_name.body


async def test_a_key_for_a_tenant_named_by_its_id_joins_that_tenant(server: AppServer) -> None:
    made = await request(server, "POST", "/admin/tenants", key=ADMIN, json={"name": "initech"})
    tenant_id = made.body["id"]
    created = await request(
        server, "POST", "/admin/keys", key=ADMIN, json={"tenant": tenant_id, "name": "by-id"}
    )
    assert created.status == 201 and created.body["tenant_id"] == tenant_id, created.body
    assert created.body["tenant"] == "initech"
    unknown = await request(
        server,
        "POST",
        "/admin/keys",
        key=ADMIN,
        json={"tenant": "00000000-0000-4000-8000-000000000000"},
    )
    assert unknown.status == 404 and unknown.error["param"] == "tenant", unknown.body
    named = await request(
        server, "POST", "/admin/tenants", key=ADMIN, json={"name": str(tenant_id).upper()}
    )
    assert named.status == 400, named.body
    tenants = await request(server, "GET", "/admin/tenants", key=ADMIN)
    assert [t["name"] for t in tenants.body["data"]].count("initech") == 1
    assert all(t["name"] != tenant_id for t in tenants.body["data"])


# -- rate limits ----------------------------------------------------------------------------


async def test_requests_per_minute_admit_exactly_the_limit(
    server: AppServer, upstream: FakeUpstream
) -> None:
    key = await new_key(server, limits={"rpm": 3})
    replies = [await chat(server, key) for _ in range(5)]
    assert [r.status for r in replies] == [200, 200, 200, 429, 429]
    assert [r.headers["x-ratelimit-remaining-requests"] for r in replies[:3]] == ["2", "1", "0"]
    assert all(r.headers["x-ratelimit-limit-requests"] == "3" for r in replies)
    refused = replies[3]
    assert_openai_error(refused, 429, "rate_limit_error", "rate_limit_exceeded")
    assert 1 <= int(refused.headers["retry-after"]) <= 20
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    assert upstream.calls["/v1/chat/completions"] == 3


async def test_a_tenant_limit_is_shared_by_its_keys(server: AppServer) -> None:
    await request(
        server, "POST", "/admin/tenants", key=ADMIN, json={"name": "small", "limits": {"rpm": 2}}
    )
    first, second = await new_key(server, "small"), await new_key(server, "small")
    statuses = [(await chat(server, k)).status for k in (first, second, first, second)]
    assert statuses == [200, 200, 429, 429]


async def test_settling_gives_back_tokens_the_answer_did_not_use(server: AppServer) -> None:
    key = await new_key(server, limits={"tpm": 1000})
    # Reserves 2 + 900 (max_tokens); the answer uses 2 + 16: 884 go back.
    first = await chat(server, key, max_tokens=900)
    assert first.status == 200
    assert int(first.headers["x-ratelimit-remaining-tokens"]) >= 1000 - 30
    assert (await chat(server, key, max_tokens=900)).status == 200


async def test_the_tpm_limit_refuses_once_estimate_plus_usage_crosses_it(
    server: AppServer, upstream: FakeUpstream
) -> None:
    key = await new_key(server, limits={"tpm": 1000})
    assert (await chat(server, key, max_tokens=700)).status == 200  # ~18 used after settling
    # Estimated 2 + 990: over what is left, refused before the upstream sees it.
    refused = await chat(server, key, max_tokens=990)
    assert_openai_error(refused, 429, "rate_limit_error", "rate_limit_exceeded")
    assert "retry-after" in refused.headers
    assert refused.headers["x-ratelimit-limit-tokens"] == "1000"
    assert upstream.calls["/v1/chat/completions"] == 1


async def test_settling_takes_more_when_the_answer_outgrew_the_estimate(
    server: AppServer, upstream: FakeUpstream
) -> None:
    key = await new_key(server, limits={"tpm": 1000})
    upstream.set_behaviour(Behaviour(completion_tokens=1500))
    # Estimated 2 + 256 (no max_tokens); the answer uses 1502: the bucket goes into debt.
    assert (await chat(server, key)).status == 200
    upstream.set_behaviour(Behaviour())
    refused = await chat(server, key, max_tokens=1)
    assert_openai_error(refused, 429, "rate_limit_error", "rate_limit_exceeded")
    assert refused.headers["x-ratelimit-remaining-tokens"] == "0"
    assert int(refused.headers["retry-after"]) >= 25  # ~500 tokens of debt at 1000/min


async def test_streamed_answers_settle_when_the_stream_ends(server: AppServer) -> None:
    key = await new_key(server, limits={"tpm": 1000})
    headers = {"Authorization": f"Bearer {key}"}
    body = {"model": "gpt-test", "messages": HELLO, "stream": True, "max_tokens": 900}
    async with aiohttp.ClientSession() as http:
        for _ in range(2):  # the second fits only if the first gave back its unused tokens
            async with http.post(
                f"{server.v1}/chat/completions", json=body, headers=headers
            ) as resp:
                assert resp.status == 200
                assert resp.headers["x-ratelimit-limit-tokens"] == "1000"
                assert (await resp.read()).endswith(b"data: [DONE]\n\n")


# -- budgets --------------------------------------------------------------------------------


async def test_a_token_budget_fails_fast_with_insufficient_quota(
    server: AppServer, upstream: FakeUpstream
) -> None:
    key = await new_key(server, budget={"period": "day", "tokens": 60})
    assert (await chat(server, key, max_tokens=20)).status == 200  # spends 2 + 16
    assert (await chat(server, key, max_tokens=20)).status == 200  # 36 spent
    refused = await chat(server, key, max_tokens=30)  # 36 + 32 > 60
    assert_openai_error(refused, 429, "insufficient_quota", "insufficient_quota")
    assert upstream.calls["/v1/chat/completions"] == 2


async def test_a_cost_budget_uses_the_price_table(
    server: AppServer, upstream: FakeUpstream
) -> None:
    # gpt-test costs $1000 / $2000 per million tokens: one call of 2 + 16 tokens is $0.034.
    key = await new_key(server, budget={"cost_usd": 0.05})
    assert (await chat(server, key, max_tokens=16)).status == 200
    refused = await chat(server, key, max_tokens=16)
    assert_openai_error(refused, 429, "insufficient_quota", "insufficient_quota")
    # gpt-other has no price: it costs nothing and stays available.
    assert (await chat(server, key, model="gpt-other")).status == 200


async def test_a_tenant_budget_covers_all_its_keys(server: AppServer) -> None:
    await request(
        server,
        "POST",
        "/admin/tenants",
        key=ADMIN,
        json={"name": "thrifty", "budget": {"tokens": 50}},
    )
    first, second = await new_key(server, "thrifty"), await new_key(server, "thrifty")
    # Each call is estimated at ~9 prompt tokens (OpenAI's count) + 16 and spends 2 + 16.
    assert (await chat(server, first, max_tokens=16)).status == 200  # 18 spent
    assert (await chat(server, second, max_tokens=16)).status == 200  # 36 spent
    refused = await chat(server, first, max_tokens=16)
    assert_openai_error(refused, 429, "insufficient_quota", "insufficient_quota")


async def test_concurrent_calls_never_spend_more_than_the_budget_between_them(
    server: AppServer, upstream: FakeUpstream
) -> None:
    created = await request(
        server,
        "POST",
        "/admin/keys",
        key=ADMIN,
        json={"tenant": "rush", "budget": {"period": "day", "tokens": 300}},
    )
    key = created.body["key"]
    # Each call reserves ~9 prompt tokens (our count) + 20 and spends 2 + 16: checked, not
    # reserved, all 50 would pass the check together and spend 900.
    replies = await asyncio.gather(*(chat(server, key, max_tokens=20) for _ in range(50)))
    served = [r for r in replies if r.status == 200]
    for refused in (r for r in replies if r.status != 200):
        assert_openai_error(refused, 429, "insufficient_quota", "insufficient_quota")
        assert "already spent or reserved" in refused.error["message"]
    usage = await request(server, "GET", f"/admin/keys/{created.body['id']}/usage", key=ADMIN)
    [today] = usage.body["days"]
    spent = today["prompt_tokens"] + today["completion_tokens"]
    assert spent <= 300
    assert today["requests"] == len(served) == upstream.calls["/v1/chat/completions"]
    assert len(served) >= 300 // 29  # every reservation that fits was admitted


@pytest.mark.parametrize(
    ("spec", "what"),
    [
        ({"budget": {"period": "day", "tokens": 100}}, "budget of 100 tokens per day"),
        ({"budget": {"cost_usd": 0.1}}, "budget of $0.10 per month"),
        ({"limits": {"tpm": 100}}, "limit of 100 tokens per minute"),
    ],
)
async def test_a_request_that_cannot_fit_its_own_reservation_is_told_so(
    server: AppServer, upstream: FakeUpstream, spec: dict[str, Any], what: str
) -> None:
    key = await new_key(server, **spec)
    refused = await chat(server, key, max_tokens=200)
    assert_openai_error(refused, 429, "insufficient_quota", "insufficient_quota")
    assert "This request alone reserves" in refused.error["message"]
    assert what in refused.error["message"]
    assert "lower max_tokens" in refused.error["message"]
    assert upstream.calls.get("/v1/chat/completions", 0) == 0
    assert (await chat(server, key, max_tokens=20)).status == 200, "a smaller one fits"
    # Each of `n` answers may take max_tokens: twenty answers of 20 tokens do not fit.
    many = await chat(server, key, max_tokens=20, n=20)
    assert_openai_error(many, 429, "insufficient_quota", "insufficient_quota")
    assert "This request alone reserves" in many.error["message"]
    assert upstream.calls["/v1/chat/completions"] == 1


async def test_n_is_bounded_as_openai_bounds_it(server: AppServer, upstream: FakeUpstream) -> None:
    key = await new_key(server)
    refused = await chat(server, key, n=129)
    assert_openai_error(refused, 400, "invalid_request_error", "invalid_request")
    assert refused.error["param"] == "n" and "at most 128" in refused.error["message"]
    assert upstream.calls.get("/v1/chat/completions", 0) == 0


# -- the database down ----------------------------------------------------------------------


async def test_with_the_database_down_unknown_keys_get_401_and_known_keys_work(
    server: AppServer, database_url: str, pg_server: Any
) -> None:
    # Unknown but made by this server (its check is valid): it would be looked up.
    unknown = generate_key(await server.app.state.services.access.key_secret())
    async with database_down(database_url, pg_server):
        for key in (unknown, generate_key(new_secret()), "ppl_garbage", "sk-whatever"):
            reply = await chat(server, key)
            assert_openai_error(reply, 401, "invalid_request_error", "invalid_api_key")
        assert (await chat(server, server.api_key)).status == 200


async def test_with_the_database_down_budgets_still_hold_what_was_reserved(
    server: AppServer, database_url: str, pg_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    key = await new_key(server, budget={"period": "day", "tokens": 60})
    assert (await chat(server, key, max_tokens=20)).status == 200  # spends 2 + 16
    async with database_down(database_url, pg_server):
        assert (await chat(server, key, max_tokens=20)).status == 200  # 36 spent
        refused = await chat(server, key, max_tokens=30)  # 36 + ~9 + 30 > 60
        assert_openai_error(refused, 429, "insufficient_quota", "insufficient_quota")
    assert "budget floor unknown: database unavailable" in caplog.text


@asynccontextmanager
async def database_down(database_url: str, pg_server: Any) -> AsyncIterator[None]:
    """The test's database refuses every connection, and those open are cut, until exit."""
    name = psycopg.conninfo.conninfo_to_dict(database_url)["dbname"]
    async with await psycopg.AsyncConnection.connect(pg_server.get_uri(), autocommit=True) as pg:
        await pg.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await pg.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )
        try:
            yield
        finally:
            await pg.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')


# -- secrets ----------------------------------------------------------------------------------


async def test_no_key_is_stored_or_logged_in_clear(
    server: AppServer, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    keys = [server.api_key, await new_key(server, name="one"), await new_key(server, "other")]
    for key in keys:
        await chat(server, key)
        await chat(server, key, model="nope")
    await request(server, "POST", f"/admin/keys/{keys[1][:12]}/revoke", key=ADMIN)
    await chat(server, keys[1])

    dumped: list[str] = []
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        )
        for schema, table in await cur.fetchall():
            rows = await conn.execute(f'SELECT t::text FROM "{schema}"."{table}" t')
            dumped += [row[0] for row in await rows.fetchall()]
    assert dumped  # the tables were read
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    for key in keys:
        secret = key[12:]  # all but the display prefix
        assert not any(secret in row for row in dumped)
        assert secret not in logged


# -- the local offline models -----------------------------------------------------------------


async def test_local_models_are_open_to_every_valid_key(database_url: str) -> None:
    local = [
        {
            "name": "local/all-MiniLM-L6-v2",
            "kind": "embeddings",
            "deployments": [{"provider": "local", "model": "all-MiniLM-L6-v2"}],
        }
    ]
    async with serve_app(
        database_url=database_url, models=local, admin_key=ADMIN, guard={"enabled": False}
    ) as server:
        key = await new_key(server, models=["some-paid-model"])
        body = {"model": "local/all-MiniLM-L6-v2", "input": "hello"}
        reply = await request(server, "POST", "/v1/embeddings", key=key, json=body)
        assert reply.status == 200, reply.body
        anonymous = await request(server, "POST", "/v1/embeddings", json=body)
        assert_openai_error(anonymous, 401, "invalid_request_error", "missing_api_key")
