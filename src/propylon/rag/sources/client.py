"""``propylon sources``: sync a collection's source (and follow the sync) over HTTP, with the
tenant of the API key, as ``propylon ingest`` does."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from propylon.rag.ingest_client import TERMINAL, IngestCommandError, error_message


class SourcesClient:
    def __init__(self, url: str, api_key: str | None, *, poll_s: float = 0.5) -> None:
        self._base = url.rstrip("/") + "/v1/"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._poll_s = poll_s

    async def sources(self, collection: str) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession(self._base, headers=self._headers) as http,
            http.get(f"collections/{collection}/sources") as response,
        ):
            if response.status != 200:
                raise IngestCommandError(await error_message(response))
            return list((await response.json())["data"])

    async def sync(self, collection: str, source: str, *, wait: bool = True) -> dict[str, Any]:
        """Enqueue a sync; with ``wait``, the job once it has finished (its result: counts)."""
        async with aiohttp.ClientSession(self._base, headers=self._headers) as http:
            path = f"collections/{collection}/sources/{source}/sync"
            async with http.post(path) as response:
                if response.status != 202:
                    raise IngestCommandError(await error_message(response))
                job_id = (await response.json())["job_id"]
            while True:
                async with http.get(f"jobs/{job_id}") as response:
                    if response.status != 200:
                        raise IngestCommandError(await error_message(response))
                    job: dict[str, Any] = await response.json()
                if not wait or job["state"] in TERMINAL:
                    return job
                await asyncio.sleep(self._poll_s)  # a command line's polling pace
