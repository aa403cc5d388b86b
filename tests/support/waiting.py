"""Waiting for a state, never for a time.

Tests poll for the state they are about and fail only when the system is stuck: the patience
is far beyond what a loaded 2-core machine needs, so a slow run is never a failed run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

PATIENCE_S = 120.0


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    what: str,
    *,
    timeout: float = PATIENCE_S,
    interval: float = 0.05,
) -> T:
    """Call ``probe`` until it returns something other than None, and return that; fail with
    ``what`` (the state awaited) after ``timeout`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = await probe()
        if found is not None:
            return found
        if loop.time() >= deadline:
            raise AssertionError(f"still waiting after {timeout:.0f} s for {what}")
        await asyncio.sleep(interval)


FINISHED = frozenset({"succeeded", "failed", "cancelled"})


async def finished(
    fetch: Callable[[], Awaitable[dict[str, Any]]], what: str, states: frozenset[str] = FINISHED
) -> dict[str, Any]:
    """Fetch a job or run (as its JSON view) until its state is one of ``states``."""

    async def probe() -> dict[str, Any] | None:
        view = await fetch()
        return view if view["state"] in states else None

    return await eventually(probe, what)
