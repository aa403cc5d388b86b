"""One ledger: the request log, the per-key spend that budgets read, the Prometheus counters
and `/v1/stats` give the same figures for a mix of calls, because they all read the one
``Spend`` of each call (``access.spend``)."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from propylon.testing import Behaviour, FakeUpstream, Fault
from tests.integration.observe.support import (
    ADMIN,
    PRICES,
    call,
    make_collection,
    records,
    serve,
)

FALLBACK = "gpt-fallback"  # its first deployment refuses connections: answered by the second


def fallback_model(upstream: FakeUpstream) -> dict[str, Any]:
    return {
        "name": FALLBACK,
        "deployments": [
            {"provider": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "gone"},
            {"provider": "openai", "base_url": f"{upstream.base_url}/v1", "model": "fake-gpt"},
        ],
    }


def prometheus(text: str) -> tuple[dict[str, float], float]:
    """Tokens by type and the total cost, from the `/metrics` exposition."""
    tokens: dict[str, float] = {}
    cost = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "propylon_tokens_total":
                kind = sample.labels["type"]
                tokens[kind] = tokens.get(kind, 0.0) + sample.value
            elif sample.name == "propylon_cost_usd_total":
                cost += sample.value
    return tokens, cost


async def test_log_usage_metrics_and_stats_agree_on_a_mix_of_calls(
    database_url: str, upstream: FakeUpstream
) -> None:
    prices = {**PRICES, FALLBACK: {"input": 3.0, "output": 5.0}}
    async with serve(
        database_url,
        upstream,
        observe={"prices": prices},
        more_models=[fallback_model(upstream)],
        guard={"enabled": False},
    ) as server:
        created = await call(
            server,
            "POST",
            "/admin/keys",
            key=ADMIN,
            json={"tenant": "ledger", "budget": {"period": "day", "tokens": 100_000}},
        )
        assert created.status == 201, created.body
        key = created.body["key"]

        async def ask(content: str, **fields: Any) -> int:
            body = {"model": "gpt-test", "messages": [{"role": "user", "content": content}]}
            reply = await call(
                server, "POST", "/v1/chat/completions", key=key, json={**body, **fields}
            )
            return reply.status

        assert await ask("plain question", max_tokens=50) == 200
        assert await ask("cached question", temperature=0) == 200
        assert await ask("cached question", temperature=0) == 200  # a hit: spends nothing
        assert await ask("streamed question", stream=True) == 200  # usage not asked for
        assert await ask("answered by the second deployment", model=FALLBACK) == 200
        upstream.set_behaviour(Behaviour(faults=(Fault(kind="status", status=500),)))
        assert await ask("this one fails and gives back its reservation") == 502
        upstream.set_behaviour(Behaviour())

        rows = await records(server, 6)
        usage = await call(server, "GET", f"/admin/keys/{created.body['id']}/usage", key=ADMIN)
        stats = await call(server, "GET", "/v1/stats?window=1h", key=key)
        metrics = await call(server, "GET", "/metrics", key=None)

    assert len(rows) == 6 and {r["key_prefix"] for r in rows} == {created.body["prefix"]}
    by_status = sorted(r["cache_status"] or "-" for r in rows)
    assert by_status.count("hit-exact") == 1
    hit = next(r for r in rows if r["cache_status"] == "hit-exact")
    assert (hit["prompt_tokens"], hit["completion_tokens"], hit["cost_usd"]) == (0, 0, 0)
    assert hit["cost_saved_usd"] > 0
    failed = next(r for r in rows if r["status"] == 502)
    assert not failed["prompt_tokens"] and not failed["cost_usd"]
    fallback = next(r for r in rows if r["requested_model"] == FALLBACK)
    assert fallback["attempts"][-1]["outcome"] == "ok" and len(fallback["attempts"]) >= 2
    assert fallback["cost_usd"] > 0

    prompt = sum(r["prompt_tokens"] or 0 for r in rows)
    completion = sum(r["completion_tokens"] or 0 for r in rows)
    cost = sum(r["cost_usd"] or 0.0 for r in rows)
    saved = sum(r["cost_saved_usd"] or 0.0 for r in rows)
    print(f"ledger: {prompt} prompt + {completion} completion tokens, ${cost:.6f}, saved ${saved}")
    assert prompt > 0 and completion > 0

    [today] = usage.body["days"]  # what the budget reads: settled by the limits layer
    assert (today["prompt_tokens"], today["completion_tokens"]) == (prompt, completion)
    assert today["cost_usd"] == pytest.approx(cost, rel=1e-9)
    assert today["requests"] == len(rows)

    assert stats.status == 200, stats.body
    body = stats.body
    assert (body["tokens"]["prompt"], body["tokens"]["completion"]) == (prompt, completion)
    assert body["cost_usd"] == pytest.approx(cost, rel=1e-9)
    assert body["cost_saved_usd"] == pytest.approx(saved, rel=1e-9)

    tokens, total_cost = prometheus(metrics.body)  # this process served these calls only
    assert (tokens.get("prompt", 0.0), tokens.get("completion", 0.0)) == (prompt, completion)
    assert total_cost == pytest.approx(cost, rel=1e-9)


async def test_a_keys_usage_shows_its_own_traffic_with_internal_calls_apart(
    database_url: str, upstream: FakeUpstream
) -> None:
    async with serve(database_url, upstream, guard={"enabled": False}) as server:
        created = await call(server, "POST", "/admin/keys", key=ADMIN, json={"tenant": "kb"})
        key, key_id = created.body["key"], created.body["id"]
        await make_collection(server, key)
        body = {"query": "how tall is the tower?", "mode": "dense"}
        searched = await call(server, "POST", "/v1/collections/kb/search", key=key, json=body)
        assert searched.status == 200, searched.body  # its query embedding: an internal call
        asked = await call(
            server,
            "POST",
            "/v1/chat/completions",
            key=key,
            json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]},
        )
        assert asked.status == 200
        internal = await records(server, 1, "origin=internal")
        usage = await call(server, "GET", f"/admin/keys/{key_id}/usage", key=ADMIN)
    [today] = usage.body["days"]
    [embedding] = internal
    assert embedding["parent_id"] == searched.headers["x-request-id"]
    assert today["internal"]["requests"] == 1
    assert today["internal"]["prompt_tokens"] == embedding["prompt_tokens"] > 0
    assert today["requests"] == 1, "the key's own traffic: the chat call (routes are not spend)"
    assert today["prompt_tokens"] > 0
