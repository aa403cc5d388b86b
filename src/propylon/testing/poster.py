"""``Poster``: one HTTP POST of a large body, sent from another process when told.

Measuring what a large request costs a server means the measuring process must not pay for
sending it: forking a process, reading the body from disk and writing it to the socket all
happen elsewhere, and before the measurement (``Poster.ready``); ``post`` only says "go".
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

_SCRIPT = """
import json, sys, urllib.error, urllib.request
url, path, key = sys.argv[1:4]
data = open(path, "rb").read()
req = urllib.request.Request(url, data=data, method="POST", headers={
    "Authorization": "Bearer " + key, "Content-Type": "application/json"})
print("ready", flush=True)
sys.stdin.readline()
try:
    with urllib.request.urlopen(req, timeout=120) as resp:
        print(resp.status, "", flush=True)
except urllib.error.HTTPError as err:
    print(err.code, json.loads(err.read())["error"]["code"], flush=True)
"""


class Poster:
    """A child process holding one body for one POST; see the module docstring."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self._proc = proc

    @classmethod
    async def ready(cls, url: str, body: bytes, key: str, workdir: Path) -> Poster:
        """A poster for ``url`` (bearer ``key``), started with ``body`` read (written to a
        file in ``workdir`` first)."""
        path = workdir / "poster-body.json"
        path.write_bytes(body)
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _SCRIPT,
            url,
            str(path),
            key,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        poster = cls(proc)
        if await poster._line() != "ready":
            raise RuntimeError("the poster process did not start")
        return poster

    async def _line(self) -> str:
        assert self._proc.stdout is not None
        line = await asyncio.wait_for(self._proc.stdout.readline(), 120)
        return line.decode().strip()

    async def post(self) -> tuple[int, str]:
        """Send the body; the answer's status and error code ("" on success)."""
        assert self._proc.stdin is not None
        self._proc.stdin.write(b"go\n")
        await self._proc.stdin.drain()
        status, _, code = (await self._line()).partition(" ")
        await self._proc.wait()
        return int(status), code
