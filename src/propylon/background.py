"""Stopping a writer that works from one background task (the request log, the semantic
cache's write-behind): cancel the task, then finish its work from the caller, within a bound."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable


async def stop_then_drain(
    task: asyncio.Task[None] | None,
    drain: Callable[[], Awaitable[object]],
    *,
    timeout: float,
    lost: Callable[[], int],
    log: logging.Logger,
    message: str,
) -> None:
    """Cancel ``task`` and wait for it, then run ``drain`` for at most ``timeout`` seconds.
    A drain that fails or runs out of time is logged on ``log`` as ``message``, with what is
    ``lost``, never raised: shutdown goes on."""
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    try:
        await asyncio.wait_for(drain(), timeout)
    except Exception as exc:
        log.warning(message, extra={"lost": lost(), "error": repr(exc)})
