"""`propylon bench` runs end to end and writes its section without touching anyone else's.

A smoke test of the plumbing only: the numbers of a quick run mean nothing and are not checked.
The bench uses the test session's PostgreSQL (``PROPYLON_BENCH_DATABASE_URL``) instead of
starting an embedded one.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import psycopg
import pytest
from bench.processes import CpuMeter, database_pids

pytestmark = pytest.mark.slow

OTHER = """\
<!-- bench:ingestion:start -->
written by another command, kept as is
<!-- bench:ingestion:end -->
"""


async def run_bench(*args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """`python -m propylon bench ARGS…`; on a (very generous) timeout, SIGTERM it: the bench
    then stops every process it started."""
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "propylon", "bench", *args),
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), 600)
    except TimeoutError:
        proc.terminate()
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def quick_section(family: str, tmp_path: Path, database_url: str) -> str:
    """The file a quick run of ``family`` wrote, on the test session's database."""
    output = tmp_path / "benchmarks.md"
    code, out = await run_bench(
        *("--quick", "--only", family, "--output", str(output)),
        env={"PROPYLON_BENCH_DATABASE_URL": database_url},
    )
    assert code == 0, out[-3000:]
    return output.read_text()


async def test_quick_gateway_bench_writes_its_section_and_keeps_the_others(
    tmp_path: Path, database_url: str
) -> None:
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\nhand-written intro\n\n" + OTHER)
    code, out = await run_bench(
        *("--quick", "--only", "gateway", "--output", str(output)),
        env={"PROPYLON_BENCH_DATABASE_URL": database_url},
    )
    assert code == 0, out[-3000:]

    text = output.read_text()
    start, end = (
        text.index("<!-- bench:gateway:start -->"),
        text.index("<!-- bench:gateway:end -->"),
    )
    section = text[start:end]
    for row in (
        "CPU per proxied request",
        "latency p50",
        "throughput",
        "first SSE event",
        "default settings (guard classifier, semantic cache)",
        "floor: bare Starlette + aiohttp proxy",
    ):
        assert row in section
    assert "Failed requests: none." in section
    assert "hand-written intro" in text
    assert OTHER in text


async def test_unknown_benchmark_name_is_refused(tmp_path: Path) -> None:
    code, out = await run_bench("--only", "nonsense", "--output", str(tmp_path / "b.md"))
    assert code == 2
    assert "unknown benchmark" in out
    assert not (tmp_path / "b.md").exists()


async def test_quick_search_bench_stores_its_corpus_the_way_ingestion_does(
    tmp_path: Path, database_url: str
) -> None:
    """The search family writes its synthetic chunks through `CollectionStore.insert_chunks`:
    a schema change that breaks it fails here, not in the next full bench run."""
    section = await quick_section("search", tmp_path, database_url)
    assert "<!-- bench:search:start -->" in section
    assert "Hybrid p95 at 3,000 chunks" in section


async def test_quick_cache_index_bench_builds_the_replicas_index_on_its_copy(
    tmp_path: Path, database_url: str
) -> None:
    """The family builds the first-stage index as a replica does (`database_index.py`) and
    re-creates it on copies of `cache_entries` (its definition read from the database): a
    change that renames or reshapes it fails here, not in the next full bench run."""
    section = await quick_section("cache_index", tmp_path, database_url)
    assert "## Semantic cache: the first stage's database index" in section
    assert "| shipped |" in section and "m='8'" in section and "ef_search` (120)" in section


async def test_quick_explorer_bench_generates_a_small_log_keeps_it_and_reuses_it(
    tmp_path: Path, database_url: str
) -> None:
    """The explorer family at 2,000 rows in a kept database: the second run generates nothing
    and measures the same rows (how 10 million rows are generated once, then queried)."""
    output = tmp_path / "benchmarks.md"
    env = {
        "PROPYLON_BENCH_DATABASE_URL": database_url,
        "PROPYLON_BENCH_EXPLORER_ROWS": "2000",
        "PROPYLON_BENCH_EXPLORER_KEEP": f"bench_explorer_kept_{os.getpid()}",
    }
    try:
        for run in ("generated", "kept"):
            code, out = await run_bench(
                *("--quick", "--only", "explorer", "--output", str(output)), env=env
            )
            assert code == 0, out[-3000:]
            section = output.read_text()
            assert "requests explorer at 2,000 log rows" in section
            assert "**not measured** here" in section
            assert ("in an earlier run and kept" in section) is (run == "kept")
    finally:
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            name = env["PROPYLON_BENCH_EXPLORER_KEEP"]
            await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


async def test_quick_ledger_bench_spends_within_every_budget_across_two_replicas(
    tmp_path: Path, database_url: str
) -> None:
    """The ledger family: two replicas sharing Redis, 50 concurrent requests per budget; the
    section is written and every budget held (the timings of a quick run are not checked)."""
    output = tmp_path / "benchmarks.md"
    code, out = await run_bench(
        *("--quick", "--only", "ledger", "--output", str(output)),
        env={"PROPYLON_BENCH_DATABASE_URL": database_url},
    )
    assert code == 0, out[-3000:]
    text = output.read_text()
    section = text[
        text.index("<!-- bench:ledger:start -->") : text.index("<!-- bench:ledger:end -->")
    ]
    prose = " ".join(section.split())
    assert "spent **within** every budget" in prose
    assert "every refusal carried its clear error code" in prose
    rows = [
        line for line in section.splitlines() if line.startswith(("| token", "| dollar", "| TPM"))
    ]
    assert len(rows) == 3
    assert all(row.rstrip(" |").endswith("yes") for row in rows), rows


async def test_the_database_processes_are_found_and_their_cpu_counted(database_url: str) -> None:
    """``bench.fast_defaults`` charges the database's CPU under load to each gateway: the
    processes come from ``pg_stat_activity``, and a backend that works is seen to spend CPU."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as worker:
        row = await (await worker.execute("SELECT pg_backend_pid()")).fetchone()
        assert row is not None
        assert row[0] in await database_pids(database_url)
        meter = await CpuMeter.start(os.getpid(), database_url)
        for _ in range(1000):  # until the clock ticks (10 ms) show it
            await worker.execute("SELECT count(*) FROM generate_series(1, 200000)")
            if meter.spent()[1] > 0:
                break
        else:
            pytest.fail("no CPU counted for a working backend")
