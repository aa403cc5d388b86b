"""``folder`` sources: the documents under a directory the workers can read.

Only directories under an operator-allowed root (``rag.sources.folder_roots``) are read, and a
file whose real path leaves the source's directory (a symbolic link pointing out) is skipped:
a tenant cannot point a source at the worker's own files. Files are chosen as ``propylon
ingest`` chooses them (known formats; hidden files left out). An item's key is its path
under the directory, its version the file's modification time and size.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from propylon.rag.sources.connector import (
    InvalidSource,
    ItemRejected,
    KnownItem,
    SourceItem,
    SourceUnavailable,
)


def folder_config(config: dict[str, Any], roots: Sequence[str]) -> dict[str, Any]:
    """The stored configuration of a folder source; ``InvalidSource`` when not allowed."""
    path = config.get("path")
    if not isinstance(path, str) or not path:
        raise InvalidSource("A `folder` source needs `path`, a directory.", param="path")
    try:
        resolved = Path(path).resolve()
    except (OSError, ValueError, RuntimeError):
        raise InvalidSource(f"`{path}` is not a usable path.", param="path") from None
    if not any(resolved.is_relative_to(Path(root).resolve()) for root in roots):
        raise InvalidSource(
            f"`{path}` is not under a directory folder sources may read "
            "(`rag.sources.folder_roots`).",
            param="path",
        )
    return {"path": str(resolved)}


class FolderConnector:
    def __init__(self, config: dict[str, Any], *, roots: Sequence[str], max_bytes: int) -> None:
        self._root = Path(folder_config(config, roots)["path"])
        self._max_bytes = max_bytes

    async def __aenter__(self) -> FolderConnector:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None

    async def items(self, known: Mapping[str, KnownItem]) -> AsyncIterator[SourceItem]:
        # Listing gives each version without reading the bytes: ``known`` is the sync's.
        for item in await asyncio.to_thread(self._list):
            yield item

    def _list(self) -> list[SourceItem]:
        if not self._root.is_dir():
            raise SourceUnavailable(f"The folder `{self._root}` cannot be read.")
        try:
            # here, not at the top: the app imports this module, and rich only with a sync
            from propylon.rag.ingest_client import find_files

            found = find_files([self._root])  # links out of the folder left out
            items = []
            for path, key in found.files:
                stat = path.stat()
                items.append(SourceItem(key, f"{stat.st_mtime_ns}:{stat.st_size}", path.name))
            return items
        except OSError as exc:
            raise SourceUnavailable(f"The folder `{self._root}` cannot be listed: {exc}.") from None

    async def fetch(self, item: SourceItem) -> bytes:
        return await asyncio.to_thread(self._read, item.key)

    def _read(self, key: str) -> bytes:
        path = self._root / key
        try:
            if not path.resolve().is_relative_to(self._root):
                raise ItemRejected(f"`{key}` leaves the folder.")
            with path.open("rb") as handle:
                content = handle.read(self._max_bytes + 1)
        except FileNotFoundError:
            raise ItemRejected(f"`{key}` disappeared while syncing.") from None
        except OSError as exc:
            raise ItemRejected(f"`{key}` cannot be read: {exc}.") from None
        if len(content) > self._max_bytes:
            raise ItemRejected(f"`{key}` is larger than {self._max_bytes:,} bytes.")
        return content
