"""Two kinds of admin: an operator administers every tenant; a tenant admin (the `admin`
feature) only its own. Prompts and answers in /v1/logs need `logs:read`."""

from __future__ import annotations

from typing import Any

from propylon.db.database import Database
from propylon.db.migrator import bundled_migrations, migrate
from tests.integration.test_access_control import (
    ADMIN,
    assert_openai_error,
    chat,
    new_key,
    request,
)
from tests.integration.test_access_control import server as server  # the fixture
from tests.support.servers import AppServer
from tests.support.waiting import eventually


async def key_id(server: AppServer, key: str) -> str:
    listed = await request(server, "GET", "/admin/keys", key=ADMIN)
    [match] = [k for k in listed.body["data"] if k["prefix"] == key[:12]]
    ident: str = match["id"]
    return ident


async def test_a_tenant_admin_administers_only_its_own_tenant(server: AppServer) -> None:
    admin = await new_key(server, tenant="acme", features=["admin"])
    own = await new_key(server, tenant="acme", name="worker")
    other = await new_key(server, tenant="globex", name="worker")

    tenants = await request(server, "GET", "/admin/tenants", key=admin)
    assert [t["name"] for t in tenants.body["data"]] == ["acme"]
    keys = await request(server, "GET", "/admin/keys", key=admin)
    assert {k["tenant"] for k in keys.body["data"]} == {"acme"}
    peeking = await request(server, "GET", "/admin/keys?tenant=globex", key=admin)
    assert peeking.body["data"] == []

    made = await request(server, "POST", "/admin/keys", key=admin, json={"name": "ci"})
    assert made.status == 201 and made.body["tenant"] == "acme"
    usage = await request(
        server, "GET", f"/admin/keys/{await key_id(server, own)}/usage", key=admin
    )
    assert usage.status == 200

    # Another tenant's key is not found; a name both tenants use means the caller's own.
    other_id = await key_id(server, other)
    for method, path in (
        ("POST", f"/admin/keys/{other_id}/revoke"),
        ("GET", f"/admin/keys/{other_id}/usage"),
    ):
        reply = await request(server, method, path, key=admin)
        assert_openai_error(reply, 404, "invalid_request_error", "not_found")
    revoked = await request(server, "POST", "/admin/keys/worker/revoke", key=admin)
    assert revoked.status == 200 and revoked.body["tenant"] == "acme"
    assert (await chat(server, other)).status == 200  # still alive
    assert (await chat(server, own)).status == 403  # revoked by its own tenant's admin


async def test_a_tenant_admin_cannot_reach_other_tenants_or_grant_operator(
    server: AppServer,
) -> None:
    admin = await new_key(server, tenant="acme", features=["admin"])
    refused = [
        ("POST", "/admin/tenants", {"name": "new"}),
        ("POST", "/admin/keys", {"tenant": "globex"}),
        ("POST", "/admin/keys", {"features": ["chat", "operator"]}),
        ("DELETE", "/admin/cache/models/gpt-test", None),
        ("GET", "/admin/cache/stats", None),
        ("DELETE", "/admin/cache/tenants/00000000-0000-0000-0000-000000000000", None),
    ]
    for method, path, body in refused:
        reply = await request(server, method, path, key=admin, json=body)
        assert_openai_error(reply, 403, "permission_error", "operator_required")


async def test_logs_show_prompts_and_answers_only_with_logs_read(server: AppServer) -> None:
    plain = await new_key(server, tenant="acme")
    reader = await new_key(server, tenant="acme", features=["chat", "logs:read"])
    assert (await chat(server, plain)).status == 200

    async def rows(key: str) -> list[dict[str, Any]]:
        async def logged() -> list[dict[str, Any]] | None:  # written in the background
            data: list[dict[str, Any]] = (await request(server, "GET", "/v1/logs", key=key)).body[
                "data"
            ]
            return data or None

        return await eventually(logged, "a request log row")

    [withheld] = await rows(plain)
    assert withheld["prompt"] is None and withheld["response"] is None
    assert withheld["content_withheld"] is True
    [full] = await rows(reader)
    assert full["prompt"] is not None and full["response"] is not None
    assert "content_withheld" not in full


async def test_new_keys_come_without_logs_read(server: AppServer) -> None:
    made = await request(server, "POST", "/admin/keys", key=ADMIN, json={"tenant": "acme"})
    assert made.body["features"] == ["chat", "embeddings", "rag"]


async def test_the_upgrade_keeps_what_existing_keys_could_do(empty_database_url: str) -> None:
    """`admin` used to mean every tenant: such keys become operators; every existing key keeps
    reading logged prompts."""
    db = Database(empty_database_url)
    await db.open()
    try:
        before = [m for m in bundled_migrations() if m.version < 10]
        await migrate(db, before)
        async with db.connection() as conn:
            cur = await conn.execute("INSERT INTO tenants (name) VALUES ('old') RETURNING id")
            tenant = await cur.fetchone()
            assert tenant is not None
            for n, features in enumerate((["admin"], ["chat", "rag"])):
                await conn.execute(
                    "INSERT INTO api_keys (tenant_id, prefix, key_hash, features)"
                    " VALUES (%s, %s, %s, %s)",
                    (tenant["id"], f"ppl_{n}", bytes([n]) * 32, features),
                )
        await migrate(db)
        async with db.connection() as conn:
            cur = await conn.execute("SELECT features FROM api_keys ORDER BY prefix")
            rows = [r["features"] for r in await cur.fetchall()]
        assert rows == [["admin", "logs:read", "operator"], ["chat", "logs:read", "rag"]]
    finally:
        await db.close()
