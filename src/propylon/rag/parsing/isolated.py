"""Each document is parsed in a child process of its own, so no file can freeze or bloat the
worker.

A parser is native code (PDFium, lxml, lexbor) working on bytes anyone may upload: deeply
nested HTML kept lexbor in one call for minutes, a DOCX of one-character paragraphs took
gigabytes, and both happened on the worker's event loop, which then missed its heartbeats.
Here ``extract`` starts a process (from a fork server that has the parsers imported, so a
start costs milliseconds), which runs ``parse_document`` under a memory limit (``RLIMIT_AS``,
``ParseLimits.max_memory_bytes``) and a CPU limit, and sends back the pages it reaches and the
result. The worker waits without blocking its loop, kills the process once
``parse_timeout_s`` (plus a short grace) has passed, and turns every way a parse can end —
rejected, over a limit, killed, crashed — into a ``DocumentRejected`` with the reason. The
process's memory goes back to the system when it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import multiprocessing
import resource
import signal
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from propylon.rag import errors
from propylon.rag.errors import DocumentLimitExceeded, DocumentRejected, EmptyDocument
from propylon.rag.parsing.document import ParsedDocument, ParseLimits
from propylon.rag.parsing.extract import parse_document

OnPage = Callable[[int, int | None], Awaitable[None]]

_PAGE_REPORT_S = 0.25
_GRACE_S = 2.0  # the parse checks its own deadline between items; the kill is for one that hangs
# multiprocessing runs the parent's main script again in every child (to find what it
# pickled). For `propylon worker` that script imports ``propylon.cli``: imported once in the
# fork server, a child finds it there instead of importing it again (~0.15 s of CPU each).
_PRELOAD = [
    "propylon.cli",
    "propylon.rag.parsing.isolated",
    "propylon.rag.parsing.pdf",
    "propylon.rag.parsing.docx",
    "propylon.rag.parsing.pptx",
    "propylon.rag.parsing.sheets",
    "propylon.rag.parsing.odt",
    "propylon.rag.parsing.epub",
    "propylon.rag.parsing.mail",
    "propylon.rag.parsing.html",
    "propylon.rag.parsing.markdown",
    "propylon.rag.parsing.text",
]


async def extract(
    data: bytes,
    *,
    filename: str | None = None,
    media_type: str | None = None,
    limits: ParseLimits | None = None,
    on_page: OnPage | None = None,
) -> ParsedDocument:
    """The text and structure of ``data``, parsed in a child process (see the module).

    Raises a ``DocumentRejected`` subclass for an unsupported, damaged, encrypted or empty
    file, and for one over a limit: pages, size once decompressed, characters, memory, time.
    """
    limits = limits or ParseLimits()
    if not data:
        raise EmptyDocument("The file is empty.")
    context = _context()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(  # type: ignore[attr-defined]
        target=_parse_in_child,
        args=(sender, data, filename, media_type, limits),
        name="propylon-parse",
        daemon=True,
    )
    await asyncio.to_thread(process.start)  # the bytes are handed over: not on the loop
    sender.close()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limits.parse_timeout_s + _GRACE_S
    pending: asyncio.Future[Any] | None = None
    try:
        while True:
            pending = asyncio.ensure_future(asyncio.to_thread(_receive, receiver))
            done, _ = await asyncio.wait({pending}, timeout=max(0.0, deadline - loop.time()))
            if not done:
                raise DocumentLimitExceeded(
                    f"Parsing took longer than the limit of {limits.parse_timeout_s:g} s."
                )
            message = pending.result()
            pending = None
            if message is None:
                raise _died(process, limits)
            kind, *rest = message
            if kind == "page":
                if on_page is not None:
                    await on_page(rest[0], rest[1])
            elif kind == "done":
                parsed: ParsedDocument = rest[0]
                return parsed
            elif kind == "memory":
                raise _over_memory(limits)
            else:
                raise _rejection(rest[0], rest[1])
    finally:
        await _stop(process, pending)
        receiver.close()


def _context() -> BaseContext:
    """A fork server with the parsers imported: a process per document costs milliseconds,
    and never forks the worker itself (its threads, its event loop)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(_PRELOAD)
    return context


def _parse_in_child(
    sender: Connection,
    data: bytes,
    filename: str | None,
    media_type: str | None,
    limits: ParseLimits,
) -> None:
    """The child's whole life: limits on itself, the parse, one message per page, the end."""
    memory = limits.max_memory_bytes
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    cpu = math.ceil(limits.parse_timeout_s + _GRACE_S) + 1  # the parent kills it sooner
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
    reported = 0.0

    def on_page(number: int, total: int | None) -> None:
        # A few reports a second: the worker writes each as progress, and a parse must never
        # wait on the worker (a full pipe would stop it).
        nonlocal reported
        now = time.monotonic()
        if now - reported >= _PAGE_REPORT_S or number == total:
            reported = now
            sender.send(("page", number, total))

    try:
        parsed = parse_document(
            data, filename=filename, media_type=media_type, limits=limits, on_page=on_page
        )
        del data
        sender.send(("done", parsed))
    except MemoryError:
        sender.send(("memory",))
    except BaseException as exc:
        if _ran_out_of_memory(limits):
            # lxml and PDFium report a failed allocation as damage ("unknown error"): a parse
            # that reached its memory ceiling failed for memory, whatever the library said.
            sender.send(("memory",))
        elif isinstance(exc, DocumentRejected):
            sender.send(("rejected", type(exc).__name__, exc.message))
        else:
            sender.send(("rejected", "CorruptDocument", f"{type(exc).__name__}: {exc}"))
    finally:
        sender.close()


def _ran_out_of_memory(limits: ParseLimits) -> bool:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux
    return peak >= 0.75 * limits.max_memory_bytes


def _receive(receiver: Connection) -> Any:
    """The child's next message; ``None`` once it has gone (it exited or was killed)."""
    try:
        return receiver.recv()
    except (EOFError, OSError):
        return None


async def _stop(process: BaseProcess, pending: asyncio.Future[Any] | None) -> None:
    """Kill the child if it still runs, reap it, and let a read still waiting on it end."""
    if process.is_alive():
        process.kill()
    await asyncio.to_thread(process.join, 10.0)
    if pending is not None:
        with contextlib.suppress(BaseException):
            await asyncio.shield(pending)  # ends with the child: its pipe is at EOF now
    with contextlib.suppress(ValueError):
        process.close()


def _rejection(name: str, message: str) -> DocumentRejected:
    kind = getattr(errors, name, None)
    if isinstance(kind, type) and issubclass(kind, DocumentRejected):
        return kind(message)
    return errors.CorruptDocument(message)


def _over_memory(limits: ParseLimits) -> DocumentLimitExceeded:
    return DocumentLimitExceeded(
        "Parsing needed more memory than the limit of "
        f"{limits.max_memory_bytes // (1024 * 1024):,} MB."
    )


def _died(process: BaseProcess, limits: ParseLimits) -> DocumentRejected:
    """Why a child ended without a word: a signal (the memory or CPU limit, a crash)."""
    process.join(1.0)
    code = process.exitcode
    if code is not None and code < 0 and -code == signal.SIGXCPU:
        return DocumentLimitExceeded(
            f"Parsing took longer than the limit of {limits.parse_timeout_s:g} s."
        )
    if code is not None and code < 0:
        name = signal.Signals(-code).name
        return errors.CorruptDocument(
            f"The parser stopped ({name}): the file is damaged, or needs more memory than the "
            f"limit of {limits.max_memory_bytes // (1024 * 1024):,} MB."
        )
    return errors.CorruptDocument(f"The parser ended without a result (exit code {code}).")
