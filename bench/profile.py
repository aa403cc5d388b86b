"""Where the gateway's CPU per request goes: py-spy samples of `propylon serve` under load.

The same rig as the gateway family (embedded PostgreSQL, fake upstream answering at once, the
gateway on its own core). While 50 clients send non-streamed chat requests, py-spy samples the
gateway process (``--nonblocking``: the process is never paused). Samples are summarised two
ways: the share of busy samples in which each package is on the stack (inclusive), and the
functions most often at the top of the stack (self). Idle samples (waiting in the event loop's
``epoll``) are not recorded by py-spy, so shares are of CPU-busy time.

Not part of the default run (it needs ``py-spy``, in the ``dev`` extra):
``propylon bench --only profile`` or ``python -m bench.profile``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bench import load
from bench.document import stamp
from bench.gateway import CONCURRENCY, hot_path_note, open_rig
from bench.processes import cpu_seconds, environment_note, pinning_note
from bench.suite import Options, Section, main_for
from propylon import __version__

RATE_HZ = 250
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


@dataclass(frozen=True, slots=True)
class Profile:
    summary: Summary
    requests: int
    cpu_s: float
    seconds: float
    native: list[tuple[str, float]] | None = None  # perf: share of samples per library


_LOOP_FRAMES = ("Runner.run", "run_until_complete", "BaseEventLoop.run_forever")


def group_of(path: str) -> str:
    """A frame's package: ``propylon.<folders>``, a library's top package, or a stdlib module."""
    if "site-packages/" in path:
        return path.split("site-packages/", 1)[1].split("/")[0].removesuffix(".py")
    if "/propylon/" in path:
        folders = path.rsplit("/propylon/", 1)[1].split("/")[:-1]
        return ".".join(["propylon", *folders])
    match = re.search(r"/python3\.\d+/([^/]+)", path)
    if match:
        return match.group(1).removesuffix(".py")
    return path


def short(path: str) -> str:
    """``propylon/http/chat.py``, ``aiohttp/client.py``, ``asyncio/events.py``."""
    for marker in ("site-packages/", "/src/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return re.sub(r"^.*/python3\.\d+/", "", path)


def owner(paths: list[str]) -> str:
    """Who a sample is charged to: the innermost Propylon file on the stack (with the libraries
    it called), else the library at the top of the stack (the framework, the server)."""
    for path in reversed(paths):
        if path.startswith("propylon/"):
            return path
    return f"outside Propylon: {paths[-1].split('/')[0].removesuffix('.py')}"


@dataclass(slots=True)
class Summary:
    total: int = 0
    loop_only: int = 0  # samples with no Python frame below the event loop
    groups: Counter[str] = field(default_factory=Counter)
    owners: Counter[str] = field(default_factory=Counter)
    files: Counter[str] = field(default_factory=Counter)
    leaves: Counter[str] = field(default_factory=Counter)


def summarise(raw: str) -> Summary:
    """Busy samples below the event loop, per package and per Propylon file (inclusive), per
    owner (see ``owner``) and per function on top (self). Frames above the loop (runpy, typer,
    uvicorn's ``run``) are on every stack and are dropped; a sample with nothing below the loop
    is uvloop's own (native) work."""
    out = Summary()
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        out.total += count
        frames = [m for f in stack.split(";") if (m := _FRAME.match(f))]
        loop = max((i for i, m in enumerate(frames) if m.group("func") in _LOOP_FRAMES), default=-1)
        below = frames[loop + 1 :]
        if not below:
            out.loop_only += count
            continue
        for name in {group_of(m.group("file")) for m in below}:
            out.groups[name] += count
        paths = [short(m.group("file")) for m in below]
        for name in set(paths):
            if name.startswith("propylon/"):
                out.files[name] += count
        out.owners[owner(paths)] += count
        top = below[-1]
        out.leaves[f"`{top.group('func')}` ({short(top.group('file'))})"] += count
    return out


async def record(options: Options) -> Profile | None:
    search = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    spy = shutil.which("py-spy", path=search)
    if spy is None:
        return None
    seconds = options.scaled(10, 2)
    output = options.workdir / "profile.txt"
    async with open_rig(options) as (rig, _), load.client(CONCURRENCY) as http:
        await load.closed_loop(http, rig.through, concurrency=CONCURRENCY, seconds=1)
        spy_proc = await asyncio.create_subprocess_exec(
            *(spy, "record", "--pid", str(rig.gateway.pid), "--rate", str(RATE_HZ)),
            *("--duration", str(seconds), "--nonblocking", "--full-filenames"),
            *("--format", "raw"),
            *("--output", str(output)),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.sleep(0.3)  # py-spy attaches
        cpu0 = cpu_seconds(rig.gateway.pid)
        done = await load.closed_loop(
            http, rig.through, concurrency=CONCURRENCY, seconds=seconds - 0.5
        )
        cpu1 = cpu_seconds(rig.gateway.pid)
        if await spy_proc.wait() != 0 or not output.exists():
            raise RuntimeError("py-spy failed (is ptrace allowed here?)")
        native = await record_native(options, rig.gateway.pid, rig.through, http, seconds)
    return Profile(
        summary=summarise(output.read_text()),
        requests=done.completed + done.errors,
        cpu_s=cpu1 - cpu0,
        seconds=done.seconds,
        native=native,
    )


_DSO_LINE = re.compile(r"^\s*(?P<pct>\d+(?:\.\d+)?)%\s+(?P<dso>\S.*?)\s*$")


def parse_dso_report(text: str) -> list[tuple[str, float]]:
    """``perf report --sort dso`` lines (``  76.06%  libpython3.11.so.1.0``) as (library, %)."""
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        match = _DSO_LINE.match(line)
        if match:
            out.append((match.group("dso"), float(match.group("pct"))))
    return out


async def record_native(
    options: Options, pid: int, target: load.Target, http: aiohttp.ClientSession, seconds: int
) -> list[tuple[str, float]] | None:
    """A second window of the same load under ``perf record`` (software clock, no hardware
    counters needed): the share of the gateway's samples in each native library, the Python
    interpreter included. None without ``perf`` (or without the right to use it)."""
    perf = shutil.which("perf")
    if perf is None:
        return None
    data = options.workdir / "perf.data"
    recorder = await asyncio.create_subprocess_exec(
        *(perf, "record", "-F", "999", "-p", str(pid), "-o", str(data)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.sleep(0.3)
    await load.closed_loop(http, target, concurrency=CONCURRENCY, seconds=seconds - 0.5)
    recorder.send_signal(signal.SIGINT)
    await recorder.wait()  # 130 after SIGINT is its normal end
    if not data.exists():
        return None
    report = await asyncio.create_subprocess_exec(
        *(perf, "report", "-i", str(data), "--no-children", "--sort", "dso", "--stdio"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    text, _ = await report.communicate()
    return parse_dso_report(text.decode(errors="replace")) or None


async def run(options: Options) -> Section:
    profile = await record(options)
    if profile is None:
        body = "py-spy is not installed (`pip install -e '.[dev]'`); no profile taken."
        return Section("profile", f"## Where the CPU goes\n\n{stamp(options.command)}\n\n{body}")
    return Section("profile", render(profile, options))


def render(p: Profile, options: Options) -> str:
    s = p.summary
    cpu_ms = p.cpu_s * 1000 / p.requests if p.requests else float("nan")

    def share(n: int) -> str:
        return f"{100 * n / s.total:.0f} %" if s.total else "–"

    def per_request(n: int) -> str:
        return f"{cpu_ms * n / s.total:.2f} ms" if s.total else "–"

    def table(title: str, rows: list[tuple[str, int]]) -> str:
        lines = [f"| {title} | share of busy samples | ≈ CPU per request |", "|---|---:|---:|"]
        lines += [f"| {name} | {share(n)} | {per_request(n)} |" for name, n in rows]
        return "\n".join(lines)

    loop = [("event loop only (uvloop's C code: sockets, callbacks)", s.loop_only)]
    quick = " **Quick run: too short for the numbers to mean anything.**" if options.quick else ""
    return f"""\
## Where the CPU goes (profile)

{stamp(options.command)}{quick}

py-spy {RATE_HZ} Hz, `--nonblocking`, on the gateway process while {CONCURRENCY} clients sent
non-streamed chat requests to an instant fake upstream for {p.seconds:.0f} s:
{p.requests:,} requests, {cpu_ms:.2f} ms CPU per request (`/proc`), {s.total:,} busy samples.
Propylon {__version__}, the gateway family's hot path ({hot_path_note()}).
{environment_note()} {pinning_note()}
"≈ CPU per request" spreads the measured CPU per request by the share of samples. The first
table charges each sample to one owner, so it adds up to 100 %: the innermost Propylon file on
the stack, with the libraries it called (its psycopg, aiohttp, logging…); samples with no
Propylon file go to the library on top (the framework, the server). A sample counts as busy
when the thread is not sleeping: on a loaded machine that includes time runnable but waiting
for the core.

{table("charged to (innermost Propylon file on the stack)", loop + s.owners.most_common(18))}

{table("Propylon's files, inclusive (on the stack)", s.files.most_common(14))}

{table("on top of the stack (self time)", s.leaves.most_common(16))}
{native_table(p, cpu_ms)}"""


def native_table(p: Profile, cpu_ms: float) -> str:
    """The perf table, or why there is none."""
    if not p.native:
        return "\nNo native profile (`perf` is not installed here, or not allowed).\n"
    lines = [
        "",
        "Native code, from a second window of the same load under `perf record -F 999` "
        "(software clock): the share of the gateway's samples in each library. "
        "`libpython` is the interpreter running all the Python above; the kernel's share is "
        "sockets, epoll and scheduling.",
        "",
        "| library | share of samples | ≈ CPU per request |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| `{dso}` | {pct:.1f} % | {cpu_ms * pct / 100:.2f} ms |" for dso, pct in p.native[:12]
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main_for("bench.profile")
