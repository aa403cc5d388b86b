"""Hostile documents: how long each takes to fail its job, what the worker's memory does
meanwhile, and how long an ordinary document uploaded beside them takes to be ready.

Real processes: `propylon serve` (no in-process worker) and one `propylon worker` (8 jobs at
once, the bundled MiniLM embedder, parse limits of 6 s and 1 GiB per document), on the run's
PostgreSQL. The files are the ones `tests/integration/rag/test_hostile_documents.py` uploads,
built by the same functions (`tests/support/documents.py`): 200,000 nested `<div>`, a DOCX of
190 MB of one-character paragraphs, a DOCX whose member lies about its size (1 GiB of zeros),
a 2,000-page blank PDF and a corrupt PDF. The baseline is the same ordinary PDF uploaded alone
just before, on the same worker. The worker's RSS is read from `/proc` every 50 ms.

Run alone: ``python -m bench.hostile_files [--quick] [--output docs/benchmarks.md]``.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from tests.support import documents

from bench.document import stamp
from bench.keys import bench_key
from bench.processes import (
    GATEWAY_CORE,
    SINGLE_NODE,
    embedded_database,
    gateway,
    pin_self,
    propylon,
    rss_mb,
    spawn,
)
from bench.suite import Options, Section, main_for

PARSE_TIMEOUT_S = 6.0
PARSE_MEMORY_MB = 1024
NORMAL = "The quarterly report shows steady growth in every region ({})."


def normal_pdf(label: str) -> bytes:
    """The ordinary one-page PDF; ``label`` keeps copies apart (uploads are deduplicated)."""
    return documents.pdf([[NORMAL.format(label)]])


def hostile_files(quick: bool) -> dict[str, tuple[str, Callable[[], bytes]]]:
    """Each file's name, what it is, and its builder (smaller in a quick run)."""
    scale = 10 if quick else 1
    return {
        "nested.html": (
            f"{200_000 // scale:,} nested `<div>`",
            lambda: documents.nested_html(200_000 // scale),
        ),
        "paragraphs.docx": (
            f"DOCX, {190 // scale} MB of one-character paragraphs",
            lambda: documents.docx_of_tiny_paragraphs(190 * 1024 * 1024 // scale),
        ),
        "bomb.docx": (
            f"DOCX member claiming 1 KB, {1024 // scale} MB of zeros",
            lambda: documents.lying_zip_bomb(1024 * 1024 * 1024 // scale),
        ),
        "blank.pdf": (
            f"{2000 // scale:,}-page blank PDF",
            lambda: documents.blank_pdf(2000 // scale),
        ),
        "corrupt.pdf": ("corrupt PDF", documents.corrupt_pdf),
    }


def write_config(workdir: Path) -> Path:
    config = {
        "models": [
            {
                "name": "local/all-MiniLM-L6-v2",
                "kind": "embeddings",
                "deployments": [{"provider": "local", "model": "all-MiniLM-L6-v2"}],
            }
        ],
        "guard": {"enabled": False},
        "jobs": {"in_process_worker": False, "concurrency": 8, "poll_interval_s": 0.1},
        "rag": {"parse_timeout_s": PARSE_TIMEOUT_S, "parse_memory_mb": PARSE_MEMORY_MB},
    }
    path = workdir / "hostile-files.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass(slots=True)
class Outcome:
    """One document: its size, its status, its error, and seconds from upload to the end."""

    size: int
    status: str = ""
    error: str = ""
    seconds: float = 0.0


@dataclass(slots=True)
class Memory:
    """The worker's RSS in MB: before the hostile files, the highest seen, at the end."""

    before: float = 0.0
    peak: float = 0.0
    after: float = 0.0
    samples: list[float] = field(default_factory=list)


async def upload(http: aiohttp.ClientSession, content: bytes, filename: str) -> str:
    form = aiohttp.FormData()
    form.add_field("file", io.BytesIO(content), filename=filename)
    async with http.post("collections/docs/documents", data=form) as response:
        body: dict[str, Any] = await response.json()
        if response.status != 202:
            raise RuntimeError(f"upload of {filename}: {response.status} {body}")
        return str(body["id"])


async def until_done(
    http: aiohttp.ClientSession, document_id: str, outcome: Outcome, since: float
) -> None:
    """Poll the document until it is ready or failed; fill in ``outcome``."""
    deadline = since + 300.0
    while time.monotonic() < deadline:
        async with http.get(f"collections/docs/documents/{document_id}") as response:
            document: dict[str, Any] = await response.json()
        if document["status"] in ("ready", "failed"):
            outcome.seconds = time.monotonic() - since
            outcome.status = document["status"]
            outcome.error = document.get("error") or ""
            return
        await asyncio.sleep(0.05)
    outcome.status = "still " + document["status"]
    outcome.seconds = time.monotonic() - since


async def watch(pid: int, memory: Memory, stop: asyncio.Event) -> None:
    while not stop.is_set():
        try:
            memory.samples.append(rss_mb(pid))
        except FileNotFoundError:  # the worker is gone: the run fails on its own
            return
        await asyncio.sleep(0.05)


async def run(options: Options) -> Section:
    pin_self()
    workdir = options.workdir
    files = {name: (what, build()) for name, (what, build) in hostile_files(options.quick).items()}
    outcomes = {name: Outcome(len(data)) for name, (_, data) in files.items()}
    alone = Outcome(len(normal_pdf("alone")))
    beside = Outcome(len(normal_pdf("beside")))
    memory = Memory()
    async with embedded_database(options) as database_url:
        config = write_config(workdir)
        env = {"DATABASE_URL": database_url, **SINGLE_NODE}
        async with (
            gateway(workdir, config, database_url, name="hostile-gateway") as (url, _),
            spawn(
                propylon("worker", "--config", str(config)),
                log=workdir / "hostile-worker.log",
                core=GATEWAY_CORE,
                env=env,
            ) as worker,
        ):
            key = await bench_key(url)
            headers = {"Authorization": f"Bearer {key.value}"}
            async with aiohttp.ClientSession(f"{url}/v1/", headers=headers) as http:
                async with http.post("collections", json={"name": "docs"}) as response:
                    if response.status != 201:
                        raise RuntimeError(f"collection: {response.status}")
                warm = await upload(http, documents.pdf([["warming up the worker"]]), "warm.pdf")
                await until_done(http, warm, Outcome(0), time.monotonic())
                started = time.monotonic()
                alone_id = await upload(http, normal_pdf("alone"), "alone.pdf")
                await until_done(http, alone_id, alone, started)
                memory.before = rss_mb(worker.pid)
                stop = asyncio.Event()
                watcher = asyncio.create_task(watch(worker.pid, memory, stop))
                try:
                    uploaded = {}
                    for name, (_, data) in files.items():
                        uploaded[name] = (await upload(http, data, name), time.monotonic())
                    started = time.monotonic()
                    ordinary = await upload(http, normal_pdf("beside"), "report.pdf")
                    await asyncio.gather(
                        until_done(http, ordinary, beside, started),
                        *(
                            until_done(http, document_id, outcomes[name], at)
                            for name, (document_id, at) in uploaded.items()
                        ),
                    )
                finally:
                    stop.set()
                    await watcher
                memory.after = rss_mb(worker.pid)
                memory.peak = max([memory.before, *memory.samples])
    return Section("hostile_files", render(files, outcomes, alone, beside, memory, options))


def render(
    files: dict[str, tuple[str, bytes]],
    outcomes: dict[str, Outcome],
    alone: Outcome,
    beside: Outcome,
    memory: Memory,
    options: Options,
) -> str:
    rows = "\n".join(
        f"| `{name}` | {what} | {len(data) / 1e6:.2f} MB | {outcomes[name].status} "
        f"| {outcomes[name].seconds:.2f} s | {outcomes[name].error[:90]} |"
        for name, (what, data) in files.items()
    )
    failed = sum(o.status == "failed" for o in outcomes.values())
    grown = memory.after - memory.before
    fast = "met" if beside.status == "ready" and beside.seconds < 5.0 else "**not met**"
    kept = "met" if grown < 100.0 else "**not met**"
    quick = " Quick run: files ten times smaller, numbers not meaningful." if options.quick else ""
    return f"""## Hostile documents: time to fail, worker memory, a normal document beside them

{stamp(options.command)}{quick}

**Current:** {failed} of {len(files)} hostile files failed their jobs with a reason; an
ordinary one-page PDF uploaded right after them was **{beside.status} in {beside.seconds:.2f} s**
(goal under 5 s: {fast}; alone, just before: {alone.seconds:.2f} s). The worker's RSS:
{memory.before:.0f} MB before, **{memory.peak:.0f} MB at its highest** while they were parsed,
**{memory.after:.0f} MB after** ({grown:+.0f} MB; goal within 100 MB: {kept}).

| file | what | size | status | upload to end | reason (cut) |
|---|---|---|---|---|---|
{rows}

Method: `propylon serve` without its in-process worker and one `propylon worker`
(`jobs.concurrency` 8, `rag.parse_timeout_s` {PARSE_TIMEOUT_S:.0f}, `rag.parse_memory_mb`
{PARSE_MEMORY_MB}), on an embedded PostgreSQL; the bundled MiniLM embeds. After a warm-up
document and the ordinary PDF alone (the baseline), the five files are uploaded one after
another, then a copy of the ordinary PDF (its text labelled: identical uploads are
deduplicated); each document's status is polled every 50 ms from its
upload. Each parse runs in a child process with its own memory and time limits
(`rag/parsing/isolated.py`), so the child's memory is not the worker's: the RSS above is the
worker process's own, sampled every 50 ms (`/proc/<pid>/statm`). The same files and bounds are
tested in `tests/integration/rag/test_hostile_documents.py`.
"""


if __name__ == "__main__":
    main_for("bench.hostile_files")
