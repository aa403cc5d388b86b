"""Real `propylon` processes for end-to-end tests, on free loopback ports."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp

PROPYLON = [sys.executable, "-m", "propylon"]

# The local embedding model the e2e tests of workers ingest with.
MINILM = {
    "name": "local/all-MiniLM-L6-v2",
    "kind": "embeddings",
    "deployments": [{"provider": "local", "model": "all-MiniLM-L6-v2"}],
}
# A worker that loses its lease, and whose jobs are reaped, within seconds of being killed.
KILLABLE_WORKER_ENV = {
    "PROPYLON_JOBS__LEASE_S": "2",
    "PROPYLON_JOBS__HEARTBEAT_S": "0.4",
    "PROPYLON_JOBS__REAP_INTERVAL_S": "0.5",
    "PROPYLON_JOBS__POLL_INTERVAL_S": "0.5",
    "PROPYLON_GUARD__ENABLED": "false",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_http(url: str, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers 200."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with aiohttp.ClientSession() as http:
        while True:
            try:
                async with http.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"{url} did not answer within {timeout} s")
            await asyncio.sleep(0.1)


@dataclass(frozen=True)
class Completed:
    """A finished `propylon` command."""

    returncode: int
    stdout: str
    stderr: str


async def complete_propylon(
    *args: str | bytes, env: dict[str, str] | None = None, cwd: Path | None = None
) -> Completed:
    """Run `python -m propylon ARGS…` to completion, whatever its exit status (an argument
    given as bytes reaches the process as those bytes, valid text or not)."""
    proc = await asyncio.create_subprocess_exec(
        *PROPYLON,
        *args,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    return Completed(proc.returncode, out.decode(), err.decode())


async def run_propylon(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> str:
    """Run `python -m propylon ARGS…` to completion; its stdout (raises if it failed)."""
    done = await complete_propylon(*args, env=env, cwd=cwd)
    if done.returncode != 0:
        raise RuntimeError(f"propylon {' '.join(args)} failed: {done.stderr}")
    return done.stdout


@asynccontextmanager
async def propylon_process(
    *args: str,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    cwd: Path | None = None,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run `python -m propylon ARGS…`; SIGTERM it (then kill) on exit."""
    out = open(log, "wb") if log else asyncio.subprocess.DEVNULL  # noqa: SIM115, ASYNC230
    proc = await asyncio.create_subprocess_exec(
        *PROPYLON,
        *args,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        stdout=out,
        stderr=out,
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if log and not isinstance(out, int):
            out.close()
