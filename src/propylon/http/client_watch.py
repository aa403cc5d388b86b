"""Stop a request's work when its client hangs up.

uvicorn does not cancel an application whose client disconnected: a handler waiting on an
upstream goes on waiting, the answer is paid for and sent to nobody, and the request log says
200. A ``ClientWatch`` opened around a model call (after the request's body has been read)
cancels the task it was opened in when the server reports ``http.disconnect``. The call then
ends as a cancelled call all the way down: the upstream request is closed, the budget's
reservation settled, the request log records 499 ``client_disconnected`` (a stream: 200 with
that code); leaving the ``with`` block raises ``ClientDisconnected``, which the route renders
like any error, to nobody.

The watch starts ``GRACE_S`` after the block is entered: a timer costs about 1.3 µs, the task
that waits for the disconnect about 7 µs more (uvloop, in a throwaway loop), and most answers
are sent before the timer fires. A client that leaves earlier is found when it fires (the
server reports a past disconnect at once). An LLM's answer takes seconds; the grace wastes at
most one of them.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from starlette.types import Receive

from propylon.errors import ClientDisconnected

GRACE_S = 1.0


class ClientWatch:
    """``with ClientWatch(receive):`` cancels the current task when the client disconnects;
    the block then raises ``ClientDisconnected``. Open it after the request body is read: the
    watch reads ``receive`` and would take the body's messages."""

    def __init__(self, receive: Receive, grace_s: float = GRACE_S) -> None:
        self._receive = receive
        self._grace_s = grace_s
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._open = False
        self.left = False  # the client disconnected and the task was cancelled for it

    def __enter__(self) -> ClientWatch:
        self._task = asyncio.current_task()
        if self._task is not None:
            self._open = True
            self._timer = asyncio.get_running_loop().call_later(self._grace_s, self._start)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        _: TracebackType | None,
    ) -> None:
        self._open = False
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()
            self._watcher.add_done_callback(_consume)
        if not self.left:
            return
        assert self._task is not None
        others = self._task.uncancel()  # ours is withdrawn; another (a shutdown) stands
        if isinstance(error, asyncio.CancelledError) and others == 0:
            raise ClientDisconnected("The client closed the connection.") from error

    def _start(self) -> None:
        self._timer = None
        if self._open:
            self._watcher = asyncio.ensure_future(self._until_disconnect())

    async def _until_disconnect(self) -> None:
        while (await self._receive())["type"] != "http.disconnect":
            pass
        if self._open and self._task is not None:
            self.left = True
            self._task.cancel()


def _consume(task: asyncio.Task[None]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved, so asyncio does not log it as never retrieved
