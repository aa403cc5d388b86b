"""Text PostgreSQL can store: no NUL character, no lone surrogate.

PostgreSQL refuses both in ``text`` (and ``\\u0000`` in ``jsonb``). Input that is stored as
given (names, ids, filters, metadata) is checked at the edge and refused with a 400 naming the
field (``check_storable``); content that must be kept whatever it holds (prompts and answers
in the request log, span attributes and exception messages in the trace store) is escaped
instead (``escape_unstorable``, on each text of a row: ``escape_row``; on each string of a
JSON value: ``escape_strings``). A ``jsonb`` column gets its value escaped the same way, as
JSON text (``jsonb_text``, for COPY) or as a value (``storable_json``, for a ``Jsonb``
parameter): a request's guard verdicts, response headers or a job's result are kept, their
NUL shown as ``\\u0000``, never refused by the database.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from propylon.errors import InvalidRequest

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def is_storable(text: str) -> bool:
    """No NUL and no lone surrogate: one scan, no copy. ASCII text (flagged by CPython, so
    known without a scan) cannot hold a surrogate: a NUL is looked for with ``in``, about a
    hundred times faster than the pattern on an 8 MB prompt."""
    if text.isascii():
        return "\x00" not in text
    return _UNSTORABLE.search(text) is None


def escape_unstorable(text: str) -> str:
    """``text`` with each NUL or lone surrogate written as its JSON escape (``\\u0000``)."""
    if is_storable(text):  # the ASCII fast path: every text of every stored row passes here
        return text
    return _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def escape_row(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """``row`` with each text escaped (``escape_unstorable``), other values as they are."""
    return tuple(escape_unstorable(v) if isinstance(v, str) else v for v in row)


def escape_strings(value: Any) -> Any:
    """``value`` with every string in it, key or value, escaped (``escape_unstorable``): what
    a ``jsonb`` column accepts once serialised (PostgreSQL refuses ``\\u0000`` there, and a
    lone surrogate). For values of bounded depth (span attributes): recursive."""
    if isinstance(value, str):
        return escape_unstorable(value)
    if isinstance(value, dict):
        return {escape_strings(k): escape_strings(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape_strings(item) for item in value]
    return value


def storable_json(value: Any) -> Any:
    """``value`` as a ``jsonb`` parameter accepts it: itself when every string in it can be
    stored (one scan, no copy), else with every string escaped (``escape_strings``)."""
    return value if unstorable_field(value, "") is None else escape_strings(value)


def json_text(value: Any) -> str:
    """``value`` as JSON text, as COPY writes a ``json`` value."""
    try:
        return orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:
        # orjson refuses lone surrogates; the standard library escapes them (``\\udc80``).
        return json.dumps(value, default=str)


def jsonb_text(value: Any) -> str:
    """``value`` as JSON text a ``jsonb`` column accepts: should a string in it hold a NUL
    (which JSON writes ``\\u0000``, and ``jsonb`` refuses) or a lone surrogate, every string
    is escaped first (``escape_strings``): the value is kept, its NUL shown as ``\\u0000``."""
    try:
        text = orjson.dumps(value, default=str).decode()
    except orjson.JSONEncodeError:  # a lone surrogate
        return json_text(escape_strings(value))
    return text if "\\u0000" not in text else json_text(escape_strings(value))


def unstorable_field(value: Any, field: str) -> str | None:
    """The path (``metadata.owner``, ``messages[2]``) of the first string in ``value``, key or
    value, that PostgreSQL cannot store; ``None`` when every one can. Iterative: JSON nests
    deeper than Python recurses."""
    stack: list[tuple[Any, str]] = [(value, field)]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if not is_storable(item):
                return path
        elif isinstance(item, dict):
            children: list[tuple[Any, str]] = []
            for key, child in item.items():
                name = f"{path}.{key}" if path else str(key)
                if isinstance(key, str) and not is_storable(key):
                    return path or "(key)"
                children.append((child, name))
            stack.extend(reversed(children))
        elif isinstance(item, list | tuple):
            stack.extend((child, f"{path}[{i}]") for i, child in reversed(list(enumerate(item))))
    return None


def check_storable(value: Any, field: str = "") -> None:
    """Raise a 400 naming the first field of ``value`` holding a NUL or a lone surrogate."""
    found = unstorable_field(value, field)
    if found is not None:
        name = escape_unstorable(found if len(found) <= 200 else found[:200] + "…")
        raise InvalidRequest(
            f"`{name}` contains a NUL character or a lone surrogate, which cannot be stored; "
            "remove it.",
            param=name,
            code="unstorable_text",
        )
