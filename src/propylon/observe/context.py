"""What is known about the HTTP request being served, for the layers that cannot see it.

The HTTP middleware opens one ``RequestContext`` per request and makes it current; the
request-log wrapper, the structured logs and the tracing read it from ``current_request``.
It is a mutable object so that what a route's task writes is seen by the middleware even when
the response body is produced in another task (streams).
"""

from __future__ import annotations

import os
import time
from contextvars import ContextVar
from dataclasses import dataclass, field

_MAX_ID = 128


@dataclass(slots=True)
class RequestContext:
    """One HTTP request: its id, when it started, the caller's labels, whether it was recorded."""

    request_id: str
    path: str = ""
    method: str = ""
    started: float = field(default_factory=time.perf_counter)
    started_wall: float = field(default_factory=time.time)
    metadata_header: str | None = None  # raw `x-propylon-metadata`, parsed by the recorder
    recorded: bool = False  # the request-log wrapper took charge of this request's record


current_request: ContextVar[RequestContext | None] = ContextVar("propylon_request", default=None)


def new_request_id(supplied: str | None = None) -> str:
    """The caller's ``x-request-id`` when it is short printable ASCII; else a fresh one."""
    if supplied and len(supplied) <= _MAX_ID and supplied.isascii() and supplied.isprintable():
        return supplied
    return os.urandom(16).hex()  # 32 hex digits, like uuid4().hex, in a quarter of the time
