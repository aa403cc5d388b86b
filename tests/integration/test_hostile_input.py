"""Hostile input gets a clear 4xx, never a 5xx; secrets never leave in an error message."""

from __future__ import annotations

import gzip

import aiohttp
import orjson
import pytest

from propylon.testing import Behaviour, FakeUpstream, Fault
from tests.support.servers import AppServer, serve_app

PROVIDER_KEY = "sk-live-0123456789abcdefghijklmn"


async def post(
    server: AppServer, body: bytes, headers: dict[str, str] | None = None
) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession() as http,
        http.post(
            f"{server.v1}/chat/completions",
            data=body,
            headers={**server.headers, "Content-Type": "application/json", **(headers or {})},
        ) as resp,
    ):
        return resp.status, await resp.text()


async def test_absurdly_deep_json_is_a_400_not_a_crash(gateway: AppServer) -> None:
    status, body = await post(gateway, b"[" * 100_000 + b"]" * 100_000)
    assert status == 400
    assert "invalid_json" in body


def nested(levels: int, pad: int = 0) -> bytes:
    """A chat body whose `metadata` nests ``levels`` arrays deep (the body one level more),
    padded past ``pad`` bytes."""
    padding = b'"pad": "' + b"x" * pad + b'", ' if pad else b""
    return (
        b"{" + padding + b'"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], '
        b'"metadata": ' + b"[" * levels + b"1" + b"]" * levels + b"}"
    )


@pytest.mark.parametrize("pad", [0, 300_000], ids=["small", "read in pieces"])
async def test_json_nested_past_what_can_be_written_again_is_a_400_naming_the_limit(
    gateway: AppServer, pad: int
) -> None:
    """orjson writes at most 254 levels: 260 used to pass the reader and fail (500, no
    record) when the body was sent upstream; 300 levels in a large body overflowed the
    piecewise reader's stack."""
    for levels in (128, 260, 300, 900):
        status, body = await post(gateway, nested(levels, pad))
        assert status == 400 and "deeper than 128 levels" in body, (levels, status, body[:300])
    status, body = await post(gateway, nested(100, pad))
    assert status == 200, body[:300]


async def test_a_compressed_body_is_a_415_naming_the_encoding(gateway: AppServer) -> None:
    """It was read as JSON: "str is not valid UTF-8: surrogates not allowed" (400)."""
    raw = gzip.compress(b'{"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}')
    status, body = await post(gateway, raw, {"Content-Encoding": "gzip"})
    assert status == 415, body
    error = orjson.loads(body)["error"]
    assert (error["code"], error["param"]) == ("unsupported_media_type", "content-encoding")
    assert "gzip" in error["message"]
    status, _ = await post(gateway, gzip.decompress(raw), {"Content-Encoding": "identity"})
    assert status == 200


async def test_an_oversized_header_is_refused_without_a_server_error(gateway: AppServer) -> None:
    status, _ = await post(gateway, b"{}", {"X-Padding": "a" * 200_000})
    assert 400 <= status < 500


async def test_a_provider_key_echoed_by_the_upstream_never_reaches_the_client(
    database_url: str, upstream: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_PROVIDER_KEY", PROVIDER_KEY)
    upstream.set_behaviour(
        Behaviour(
            faults=(Fault(kind="status", status=401, message=f"Incorrect API key: {PROVIDER_KEY}"),)
        )
    )
    models = [
        {
            "name": "gpt-secret",
            "deployments": [
                {
                    "provider": "openai",
                    "base_url": f"{upstream.base_url}/v1",
                    "api_key_env": "TEST_PROVIDER_KEY",
                }
            ],
        }
    ]
    async with serve_app(database_url=database_url, models=models) as server:
        for stream in (False, True):
            body = (
                b'{"model": "gpt-secret", "stream": '
                + (b"true" if stream else b"false")
                + b', "messages": [{"role": "user", "content": "hi"}]}'
            )
            status, text = await post(server, body)
            assert status == 401
            assert PROVIDER_KEY not in text
            assert "[REDACTED]" in text
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{server.v1}/logs", headers=server.headers) as resp,
        ):
            logs = await resp.text()
    assert PROVIDER_KEY not in logs


# "²" passes str.isdigit() but not int(); the large numbers overflow a datetime, a timedelta
# or a bigint column.
REFUSED_NUMBERS = {
    "/collections/docs/documents?limit=%C2%B2": "limit",
    "/collections/docs/documents?offset=%C2%B2": "offset",
    "/collections/docs/documents/doc/text?start=%C2%B2": "start",
    "/collections/docs/documents/doc/text?end=%C2%B2": "end",
    "/logs?since=100000000000000000000": "since",
    "/logs?until=100000000000000000000": "until",
    "/logs?before=99999999999999999999999": "before",
    "/stats?window=99999999999d": "window",
    "/stats/prompt-versions?window=99999999999d": "window",
}


async def test_a_number_no_integer_or_time_can_hold_is_a_400_naming_its_parameter(
    gateway: AppServer,
) -> None:
    answers = {}
    async with aiohttp.ClientSession() as http:
        for path in REFUSED_NUMBERS:
            async with http.get(f"{gateway.v1}{path}", headers=gateway.headers) as resp:
                answers[path] = (resp.status, (await resp.json())["error"]["param"])
    assert answers == {path: (400, param) for path, param in REFUSED_NUMBERS.items()}


async def test_a_log_id_of_other_digits_than_ascii_is_looked_up_as_a_request_id(
    gateway: AppServer,
) -> None:
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{gateway.v1}/logs/%C2%B2", headers=gateway.headers) as resp,
    ):
        assert resp.status == 404
        assert (await resp.json())["error"]["param"] == "id"


async def test_the_earliest_and_latest_times_taken_reach_the_database(gateway: AppServer) -> None:
    widest = "since=0001-01-01T00:00:00%2B14:00&until=9999-12-31T23:59:59-14:00"
    async with aiohttp.ClientSession() as http:
        for query in (widest, "since=0&until=253370764799.999"):
            async with http.get(f"{gateway.v1}/logs?{query}", headers=gateway.headers) as resp:
                assert resp.status == 200, await resp.text()
