"""The floor for a Python gateway: Starlette on uvicorn relaying to the upstream with aiohttp.

No authentication, limits, cache, guard, request log or retries: one route that reads the
body, POSTs it to the upstream on a pooled session and returns the answer. The gateway family
runs it on the gateway's core with uvicorn's settings of `propylon serve` (uvloop, httptools,
no access log), so its CPU per request is what any Python proxy on this stack pays before it
does anything useful.

Run by the bench as ``python -m bench.bare_proxy PORT UPSTREAM_ROOT``.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def bare_proxy(upstream: str) -> Starlette:
    sessions: list[aiohttp.ClientSession] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            sessions.append(session)
            yield

    async def chat(request: Request) -> Response:
        headers = {
            "Content-Type": "application/json",
            "Authorization": request.headers.get("authorization", ""),
        }
        async with sessions[0].post(
            f"{upstream}/v1/chat/completions", data=await request.body(), headers=headers
        ) as resp:
            body = await resp.read()
            return Response(body, status_code=resp.status, media_type="application/json")

    return Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"])], lifespan=lifespan
    )


def main() -> None:
    port, upstream = int(sys.argv[1]), sys.argv[2]
    uvicorn.run(
        bare_proxy(upstream),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
