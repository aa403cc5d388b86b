"""``propylon ingest``: upload files and folders to a running Propylon and follow their jobs.

It talks HTTP to a server (``--url``, ``--api-key``) rather than to the database, so it works
the same against a laptop's ``make run`` and a remote deployment, with the tenant of the key.
Folders are walked for the formats Propylon reads (by extension; files without one by their
content); other files are reported as not ingested, with the reason. Each file's path
(relative to the folder given) is its ``external_id``, so a changed file replaces its previous
version. Files whose sha256 the collection already holds are skipped without uploading.
Progress bars follow the collection's live job events (``WS /v1/collections/{id}/events``).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from propylon.rag.errors import DocumentRejected
from propylon.rag.parsing.sniff import sniff

_SNIFF_BYTES = 64 * 1024
SUFFIXES = frozenset(
    {".pdf", ".docx", ".html", ".htm", ".xhtml", ".md", ".markdown", ".txt", ".pptx", ".xlsx"}
    | {".csv", ".tsv", ".epub", ".odt", ".eml", ".mbox", ".png", ".jpg", ".jpeg", ".tif", ".tiff"}
)
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})


class IngestCommandError(Exception):
    """Something the user must fix (unreachable server, bad key, missing path)."""


@dataclass
class FileToIngest:
    path: Path
    external_id: str
    sha256: str


@dataclass
class Outcome:
    uploaded: int = 0
    skipped: int = 0
    succeeded: int = 0
    failed: dict[str, str] = field(default_factory=dict)  # external id -> reason
    unsupported: dict[str, str] = field(default_factory=dict)  # not uploaded: external id -> why


@dataclass
class FoundFiles:
    files: list[tuple[Path, str]] = field(default_factory=list)  # (path, external_id)
    unsupported: dict[str, str] = field(default_factory=dict)  # external id -> why not


def find_files(paths: list[Path]) -> FoundFiles:
    """Every readable file under ``paths``, hidden ones excluded, and the files left out: a
    link to a file outside its folder is one (``../../etc/passwd`` is not the folder's)."""
    found = FoundFiles()
    for root in paths:
        if not root.exists():
            raise IngestCommandError(f"{root} does not exist")
        if root.is_file():
            found.files.append((root, root.name))
            continue
        inside = root.resolve()
        for path in sorted(root.rglob("*")):
            relative = path.relative_to(root)
            if any(part.startswith(".") for part in relative.parts) or not path.is_file():
                continue
            if not path.resolve().is_relative_to(inside):
                found.unsupported[relative.as_posix()] = "a link to a file outside the folder"
                continue
            reason = _why_not(path)
            if reason is None:
                found.files.append((path, relative.as_posix()))
            else:
                found.unsupported[relative.as_posix()] = reason
    return found


def _why_not(path: Path) -> str | None:
    """None for a file to upload; else why it is left out. A file without an extension is
    judged by its content, as the server does."""
    suffix = path.suffix.lower()
    if suffix in SUFFIXES:
        return None
    if suffix:
        return f"`{suffix}` is not a document format Propylon reads"
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if head.startswith(b"PK") and size > _SNIFF_BYTES:
        head = path.read_bytes()  # a ZIP's directory is at its end (DOCX)
    try:
        sniff(head)
    except DocumentRejected as exc:
        return exc.message
    return None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class IngestClient:
    def __init__(self, url: str, api_key: str | None, console: Console | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise IngestCommandError(f"--url must be an http(s) URL, not {url!r}")
        self._base = url.rstrip("/") + "/v1/"
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._console = console or Console(stderr=True)

    async def run(self, paths: list[Path], collection: str, *, create: bool = True) -> Outcome:
        if not collection.strip():
            raise IngestCommandError("--collection must name a collection")
        found = find_files(paths)
        files = [
            FileToIngest(path, external_id, sha256_of(path)) for path, external_id in found.files
        ]
        async with aiohttp.ClientSession(self._base, headers=self._headers) as http:
            info = await self._collection(http, collection, create)
            known = await self._known_hashes(http, str(info["id"]))
            todo = [f for f in files if f.sha256 not in known]
            outcome = Outcome(skipped=len(files) - len(todo), unsupported=found.unsupported)
            if not todo:
                self._console.print(f"{len(files)} file(s), all already ingested.")
                return outcome
            await self._upload_and_follow(http, str(info["id"]), todo, outcome)
        return outcome

    async def _collection(
        self, http: aiohttp.ClientSession, name: str, create: bool
    ) -> dict[str, Any]:
        async with http.get(f"collections/{quote(name, safe='')}") as response:
            if response.status == 200:
                return dict(await response.json())
            if response.status != 404:
                raise IngestCommandError(await error_message(response))
        if not create:
            raise IngestCommandError(f"no collection `{name}` (use --create to make it)")
        async with http.post("collections", json={"name": name}) as response:
            if response.status != 201:
                raise IngestCommandError(await error_message(response))
            return dict(await response.json())

    async def _known_hashes(self, http: aiohttp.ClientSession, collection_id: str) -> set[str]:
        known: set[str] = set()
        offset = 0
        while True:
            path = f"collections/{collection_id}/documents?limit=1000&offset={offset}"
            async with http.get(path) as response:
                if response.status != 200:
                    raise IngestCommandError(await error_message(response))
                page = (await response.json())["data"]
            known.update(d["sha256"] for d in page if d["status"] == "ready" and d["sha256"])
            if len(page) < 1000:
                return known
            offset += 1000

    async def _upload_and_follow(
        self,
        http: aiohttp.ClientSession,
        collection_id: str,
        files: list[FileToIngest],
        outcome: Outcome,
    ) -> None:
        columns = (
            TextColumn("{task.description}", justify="left"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[stage]}"),
            TimeElapsedColumn(),
        )
        with Progress(*columns, console=self._console) as progress:
            overall = progress.add_task("documents", total=len(files), stage="")
            bars: dict[str, TaskID] = {}
            names: dict[str, str] = {}
            done: set[str] = set()
            finished = asyncio.Event()
            ws_url = self._base.replace("http", "ws", 1) + f"collections/{collection_id}/events"
            async with http.ws_connect(ws_url) as socket:

                def on_event(job: dict[str, Any]) -> None:
                    job_id = str(job.get("id") or job.get("job_id"))
                    if job_id not in bars or job_id in done:
                        return
                    state, stage = job.get("state"), job.get("stage") or job.get("state")
                    fraction = (job.get("progress") or {}).get("fraction")
                    stages = ("parsing", "chunking", "embedding", "storing")
                    base = stages.index(stage) / 4 if stage in stages else 0.0
                    share = (fraction or 0.0) / 4 if stage in stages else 0.0
                    progress.update(bars[job_id], completed=100 * (base + share), stage=stage)
                    if state in TERMINAL:
                        done.add(job_id)
                        progress.update(bars[job_id], completed=100, stage=state)
                        progress.advance(overall)
                        if state == "succeeded":
                            outcome.succeeded += 1
                        else:
                            outcome.failed[names[job_id]] = str(job.get("reason") or state)
                        if len(done) == len(bars) and outcome.uploaded == len(files):
                            finished.set()

                async def listen() -> None:
                    async for message in socket:
                        if message.type != aiohttp.WSMsgType.TEXT:
                            break
                        event = message.json()
                        on_event(event["job"] if event.get("type") == "snapshot" else event)

                listener = asyncio.create_task(listen())
                try:
                    for item in files:
                        accepted = await self._upload(http, collection_id, item)
                        outcome.uploaded += 1
                        job_id = accepted.get("job_id")
                        if accepted.get("duplicate") or not job_id:
                            outcome.skipped += 1
                            outcome.uploaded -= 1
                            progress.advance(overall)
                            continue
                        names[job_id] = item.external_id
                        bars[job_id] = progress.add_task(
                            item.external_id[-40:], total=100, stage="queued"
                        )
                        await self._poll(http, job_id, on_event)  # catch events sent before
                    if len(done) == len(bars):
                        finished.set()
                    while not finished.is_set():
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(finished.wait(), timeout=5.0)
                        for job_id in set(bars) - done:  # a missed event must not hang us
                            await self._poll(http, job_id, on_event)
                        if len(done) == len(bars):
                            finished.set()
                finally:
                    listener.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await listener

    async def _upload(
        self, http: aiohttp.ClientSession, collection_id: str, item: FileToIngest
    ) -> dict[str, Any]:
        form = aiohttp.FormData()
        form.add_field("file", item.path.read_bytes(), filename=item.path.name)
        form.add_field("external_id", item.external_id)
        async with http.post(f"collections/{collection_id}/documents", data=form) as response:
            if response.status not in (200, 202):
                raise IngestCommandError(f"{item.path}: {await error_message(response)}")
            return dict(await response.json())

    async def _poll(self, http: aiohttp.ClientSession, job_id: str, on_event: Any) -> None:
        async with http.get(f"jobs/{job_id}") as response:
            if response.status == 200:
                on_event(await response.json())


async def error_message(response: aiohttp.ClientResponse) -> str:
    """The API error of a response, for the command line."""
    try:
        body = await response.json()
        return f"{response.status}: {body['error']['message']}"
    except (aiohttp.ContentTypeError, KeyError, TypeError, ValueError):
        return f"{response.status}: {await response.text()}"
