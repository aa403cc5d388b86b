"""An API key for the benchmark's requests, made the way an operator makes one.

The bench starts `propylon serve` with a random ``PROPYLON_ADMIN_KEY`` and creates tenant
``bench``'s key through the admin API (``POST /admin/keys``), so authentication is on the
measured path like in production. The key sets no rate limit or budget, so no request of the
bench is refused for quota. ``PROPYLON_BENCH_API_KEY`` overrides this (e.g. against a gateway
set up by hand). A build without the admin API gets a placeholder key, and the report says so.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

import aiohttp
import orjson

ADMIN_KEY = "bench-admin-" + secrets.token_urlsafe(16)
"""Given to the gateways this run starts, as PROPYLON_ADMIN_KEY."""

PLACEHOLDER = "sk-bench-placeholder-no-auth"


@dataclass(frozen=True, slots=True)
class BenchKey:
    value: str
    source: str  # how it was obtained, for the report

    @property
    def note(self) -> str:
        return f"API key: {self.source}."


async def bench_key(gateway_url: str, tenant: str = "bench") -> BenchKey:
    """A key of ``tenant`` from the running gateway (see the module docstring)."""
    given = os.environ.get("PROPYLON_BENCH_API_KEY")
    if given:
        return BenchKey(given, "from PROPYLON_BENCH_API_KEY")
    body = {"tenant": tenant, "name": f"bench-{secrets.token_hex(4)}"}
    headers = {"Authorization": f"Bearer {ADMIN_KEY}", "Content-Type": "application/json"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{gateway_url}/admin/keys", data=orjson.dumps(body), headers=headers) as resp,
    ):
        raw = await resp.read()
    if resp.status == 404:
        return BenchKey(PLACEHOLDER, "none (this build has no admin API); placeholder sent")
    if resp.status != 201:
        raise RuntimeError(f"POST /admin/keys answered {resp.status}: {raw[:500]!r}")
    key = orjson.loads(raw)["key"]
    if not isinstance(key, str):
        raise RuntimeError("POST /admin/keys returned no key")
    return BenchKey(key, f"tenant `{tenant}`, created through `POST /admin/keys`, no limits set")
