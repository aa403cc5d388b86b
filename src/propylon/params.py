"""Numbers and times as clients write them in query parameters, path segments and headers,
and the URLs they give the server to call.

One reading for every route: ASCII digits only (``str.isdigit`` also takes "²", which
``int`` refuses), within the range of what the value feeds (a page size, a PostgreSQL
``integer`` or ``bigint``, a time both Python and PostgreSQL hold), else a 400 naming the
parameter. A URL (``http_url``) is http(s), with a host, a port that exists and no spaces.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

from propylon.errors import InvalidRequest

INT_MAX = 2**31 - 1  # PostgreSQL's integer
BIGINT_MAX = 2**63 - 1  # PostgreSQL's bigint
# The start of the year 9999: an epoch time before it, with any fraction of a second, is a
# datetime (years 1-9999) and a timestamptz.
MAX_EPOCH_S = 253_370_764_800
_EPOCH = re.compile(r"([0-9]+)(?:\.[0-9]+)?")


def digits(value: str, low: int, high: int) -> int | None:
    """``value`` as an int when it is ASCII digits naming a number from ``low`` to ``high``;
    None otherwise."""
    if not (value.isascii() and value.isdigit()) or len(value.lstrip("0")) > len(str(high)):
        return None  # the length check first: int() of thousands of digits is slow, then fails
    number = int(value)
    return number if low <= number <= high else None


def int_param(value: str, name: str, low: int, high: int, message: str | None = None) -> int:
    """``value`` read by `digits`, else a 400 naming ``name`` with ``message`` (by default,
    the range)."""
    number = digits(value, low, high)
    if number is None:
        message = message or f"`{name}` must be an integer from {low} to {high}."
        raise InvalidRequest(message, param=name)
    return number


def time_param(value: str, name: str) -> datetime:
    """An ISO 8601 time (UTC unless it names an offset) or epoch seconds (a fraction allowed)
    before the year 9999, else a 400 naming ``name``."""
    message = f"`{name}` must be an ISO 8601 time or epoch seconds before the year 9999."
    epoch = _EPOCH.fullmatch(value)
    if epoch is not None:
        int_param(epoch[1], name, 0, MAX_EPOCH_S - 1, message)
        return datetime.fromtimestamp(float(value), UTC)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidRequest(message, param=name) from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def only_fields(raw: Mapping[str, Any], known: tuple[str, ...], where: str) -> None:
    """A 400 naming the first field of ``raw`` that is not one of ``known`` (``limits.rps``;
    ``where`` empty: a body's own field): a field dropped unread would leave the caller
    believing it was set."""
    for name in raw:
        if name not in known:
            field = f"{where}.{name}" if where else name
            raise InvalidRequest(
                f"`{field}` is not a field here; the fields are {', '.join(known)}.",
                param=field,
            )


def is_uuid(value: str) -> bool:
    """Whether ``value`` is a UUID in any spelling PostgreSQL's ``uuid`` reads too (hyphens
    or not, braces, upper case)."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def http_url(value: object) -> SplitResult | None:
    """``value`` split, when it is an http(s) URL with a host, a port from 1 to 65535 (or
    none) and no whitespace; None otherwise (``urlsplit`` alone takes ``http://``,
    ``http://a b/`` and port 99999, and raises on ``http://[::1``)."""
    if not isinstance(value, str) or any(c.isspace() for c in value):
        return None
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:  # a malformed IPv6 host, or a port that is not a number below 65536
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        return None
    return parts
