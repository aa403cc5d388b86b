"""The name a document is stored and shown under, from whatever its uploader, source or parent
document called it.

A name is only a label (shown in listings, citations and the answer prompt's passage labels,
and its extension helps tell the format), never a path: directories are dropped, whichever
separator wrote them (``../../etc/passwd`` is ``passwd``, ``C:\\tmp\\x.txt`` is ``x.txt``),
control characters (a line break that would start a new line in a prompt) become spaces,
characters PostgreSQL cannot store (lone surrogates) become U+FFFD, and a name longer than
255 characters is cut in its stem, keeping its extension.
"""

from __future__ import annotations

import re

MAX_CHARS = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SURROGATE = re.compile(r"[\ud800-\udfff]")  # a mail header's undecodable bytes


def document_filename(name: str | None) -> str | None:
    """``name`` as a document's label; None when nothing of it is left."""
    if name is None:
        return None
    base = re.split(r"[/\\]", name)[-1]
    base = _SURROGATE.sub("\ufffd", _CONTROL.sub(" ", base)).strip()
    if base in ("", ".", ".."):
        return None
    if len(base) <= MAX_CHARS:
        return base
    stem, dot, extension = base.rpartition(".")
    if not dot or not stem or len(extension) > 16:
        return base[:MAX_CHARS].rstrip()
    return stem[: MAX_CHARS - len(extension) - 1].rstrip() + "." + extension
