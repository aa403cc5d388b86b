"""``run_fake_upstream`` serves until a signal, as ``propylon fake-upstream`` runs it."""

from __future__ import annotations

import asyncio
import signal
import sys

import aiohttp

SERVE = (
    "from propylon.testing import Behaviour, run_fake_upstream;"
    "run_fake_upstream('127.0.0.1', 0, Behaviour(completion_tokens=3))"
)


async def test_blocking_entry_point_prints_its_url_and_stops_on_sigint(
    http: aiohttp.ClientSession,
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SERVE, stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        banner = (await asyncio.wait_for(process.stdout.readline(), 10)).decode()
        url = banner.split()[3]
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        async with http.post(url + "/v1/chat/completions", json=body) as response:
            completion = await response.json()
    finally:
        process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 10)

    assert banner.startswith("fake upstream on http://127.0.0.1:")
    assert completion["usage"]["completion_tokens"] == 3
    assert code == 0
