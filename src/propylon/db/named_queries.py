"""SQL kept in `.sql` files as named queries, loaded once per file.

A file holds blocks that start with a ``-- name: <name>`` line; the block runs until the next
such line. Comments and blank lines inside a block are kept (PostgreSQL ignores them).
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from typing import LiteralString

_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)


@cache
def named_queries(package: str, filename: str = "queries.sql") -> dict[str, LiteralString]:
    """Every query in ``package/filename`` by name; a duplicate name is an error."""
    text = resources.files(package).joinpath(filename).read_text(encoding="utf-8")
    found: dict[str, LiteralString] = {}
    headers = list(_HEADER.finditer(text))
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        end = following.start() if following is not None else len(text)
        name = header.group(1)
        if name in found:
            raise ValueError(f"{package}/{filename}: query {name!r} is defined twice")
        # Literal text from a file shipped in the package, never from user input.
        found[name] = text[header.end() : end].strip()
    return found
