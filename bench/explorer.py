"""The requests explorer at scale: its first page and filtered queries over many log rows.

Generates request-log rows (10 tenants, 50 keys, 3 models, 7 days, prompts and answers with a
5,000-word vocabulary, prompt versions, guard verdicts, cache statuses, 2 % errors; ids grow
with time, as the writer's do) in a
database of its own, server-side (``generate_series``), with every index of the migrations in
place. Then times the queries the explorer and ``GET /v1/logs`` run (``list_logs`` and
``log_detail``, the same code as the API, without HTTP), interleaved, against a baseline
round trip (``SELECT 1``) measured in the same run. The issue's goal is ≤ 300 ms p95 at
10 million rows; the row count here is ``PROPYLON_BENCH_EXPLORER_ROWS`` (default 1,000,000;
``--quick``: 20,000), and the section says which count was measured. With
``PROPYLON_BENCH_EXPLORER_KEEP=<name>`` the rows go to (and stay in) the database of that name,
and a later run only adds the rows missing, so 10 million rows are generated once for
repeated query runs (drop the database afterwards).
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.document import stamp
from bench.processes import embedded_database, scratch_database
from bench.suite import Options, Section, main_for
from propylon.db.database import Database
from propylon.db.migrator import migrate
from propylon.observe.log_detail import log_detail
from propylon.observe.logs_query import LogFilter, list_logs
from propylon.principal import Principal

GOAL_MS = 300.0
SLICE = 100_000
TENANT = "tenant-3"
READER = Principal(
    tenant_id=TENANT,
    tenant_name="bench",
    key_id="k",
    key_prefix="ppl_k3",
    features=frozenset({"logs:read"}),
)

_GENERATE = """
INSERT INTO request_log (
    created_at, request_id, tenant_id, key_prefix, endpoint, stream, requested_model,
    deployment, attempts, attempt_count, status, error_type, error_code, content_policy,
    prompt, response, prompt_tokens, completion_tokens, cost_usd, latency_ms, ttft_ms,
    overhead_ms, upstream_ms, cache_status, guard, metadata, origin, response_id, headers)
SELECT now() - ((%(n)s - i)::float8 / %(n)s::float8) * interval '7 days',
       'req-' || i,
       'tenant-' || (i %% 10),
       'ppl_k' || (i %% 50),
       'chat', i %% 4 = 0,
       (ARRAY['gpt-4o', 'gpt-4o-mini', 'claude-haiku'])[1 + i %% 3],
       (ARRAY['openai/gpt-4o', 'openai/gpt-4o-mini', 'anthropic/haiku'])[1 + i %% 3],
       '[{"deployment": "openai/gpt-4o", "outcome": "ok", "ms": 420.5}]', 1,
       CASE WHEN i %% 47 = 0 THEN 502 ELSE 200 END,
       CASE WHEN i %% 47 = 0 THEN 'upstream_error' END,
       CASE WHEN i %% 47 = 0 THEN 'upstream_error' END,
       'full',
       '[{"role": "user", "content": "question ' || i || ' about '
           || substr(md5((i %% 5000)::text), 1, 8) || ' and '
           || substr(md5((i %% 4999)::text), 1, 8) || ' please"}]',
       'an answer about ' || substr(md5((i %% 5000)::text), 1, 8) || ' in a few words',
       40 + i %% 200, 10 + i %% 300, (i %% 1000) / 1e6,
       200 + (i %% 997), CASE WHEN i %% 4 = 0 THEN 80 + i %% 101 END,
       2 + (i %% 7), 190 + (i %% 990),
       (ARRAY['miss', 'hit-exact', 'hit-semantic', 'bypass'])[1 + i %% 4],
       jsonb_build_object(
           'action', (ARRAY['pass', 'pass', 'pass', 'flag', 'sanitize'])[1 + i %% 5]),
       jsonb_build_object(
           'prompt_name', 'prompt-' || (i %% 20), 'prompt_version', 'v' || (i %% 3),
           'user', 'u-' || (i %% 1000)),
       CASE WHEN i %% 9 = 0 THEN 'internal' ELSE 'user' END,
       'chatcmpl-' || i,
       '{"x-propylon-cache": "miss"}'
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS i
"""


async def generate(database: Database, rows: int) -> float:
    """Insert ``rows`` rows in slices, after those a kept database already holds; return the
    seconds it took."""
    started = time.perf_counter()
    async with database.connection() as conn:
        row = await (await conn.execute("SELECT count(*) AS n FROM request_log")).fetchone()
    present = int(row["n"]) if row else 0
    if present >= rows:
        return 0.0
    for first in range(present + 1, rows + 1, SLICE):
        last = min(first + SLICE - 1, rows)
        async with database.connection() as conn:
            await conn.execute(_GENERATE, {"n": rows, "first": first, "last": last})
    async with database.connection() as conn:
        await conn.execute("ANALYZE request_log")
    return time.perf_counter() - started


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(options: Options) -> Section:
    rows = int(os.environ.get("PROPYLON_BENCH_EXPLORER_ROWS") or options.scaled(1_000_000, 20_000))
    repeats = options.scaled(40, 5)
    keep = os.environ.get("PROPYLON_BENCH_EXPLORER_KEEP") or None
    async with (
        embedded_database(options) as url,
        scratch_database(url, keep, prefix="bench_explorer") as scratch,
    ):
        database = Database(scratch, max_size=2)
        await database.open()
        try:
            await migrate(database)
            generate_s = await generate(database, rows)
            timings = await measure(database, repeats)
        finally:
            await database.close()
    baseline = statistics.median(timings.pop("baseline: SELECT 1 round trip"))
    table = "\n".join(
        f"| {name} | {statistics.median(t):.1f} ms | {percentile(t, 95):.1f} ms | "
        f"{percentile(t, 95) / baseline:,.0f}× | "
        f"{'**met**' if percentile(t, 95) <= GOAL_MS else '**missed**'} |"
        for name, t in timings.items()
    )
    header = (
        f"| query (tenant `{TENANT}`, a tenth of the rows) | p50 | p95 | p95 / `SELECT 1` "
        f"| ≤ {GOAL_MS:.0f} ms p95 |"
    )
    made = (
        f"{rows:,} rows generated server-side in {generate_s:,.0f} s"
        if generate_s
        else f"{rows:,} rows generated server-side in an earlier run and kept "
        f"(`PROPYLON_BENCH_EXPLORER_KEEP={keep}`)"
    )
    scale = (
        ""
        if rows >= 10_000_000
        else f" The issue asks for 10,000,000 rows; this run generated {rows:,}: the 10-million "
        "figure is **not measured** here. Set `PROPYLON_BENCH_EXPLORER_ROWS=10000000` "
        "(and `PROPYLON_BENCH_EXPLORER_KEEP=<database>` to generate them once) to measure it."
    )
    markdown = f"""## Observability: the requests explorer at {rows:,} log rows

{stamp(options.command)}

{header}
|---|---:|---:|---:|---|
{table}

Baseline: a `SELECT 1` round trip, median {baseline:.2f} ms, measured in the same run.
How: {made} into a database of their own
with every index and statistics object of the migrations (`request_log_tenant_id_desc`, the GIN
`metadata` and full text indexes, `request_log_tenant_cache` / `_guard`, the
`request_log_filters` statistics…), then `ANALYZE`; each query run {repeats} times, interleaved
with the others, through `list_logs` / `log_detail` (the code behind `GET /v1/logs` and
`GET /v1/logs/{{id}}`, without HTTP), default window (the last 24 h) unless said.{scale}
"""
    return Section("explorer", markdown)


async def measure(database: Database, repeats: int) -> dict[str, list[float]]:
    now = datetime.now(UTC)
    week = [("since", (now - timedelta(days=7)).isoformat())]

    def page(*params: tuple[str, str]) -> Callable[[], Awaitable[Any]]:
        chosen = LogFilter.from_params(params, now=now)
        return lambda: list_logs(database, READER, chosen)

    async def baseline() -> None:
        async with database.connection() as conn:
            await conn.execute("SELECT 1")

    queries: dict[str, Callable[[], Awaitable[Any]]] = {
        "baseline: SELECT 1 round trip": baseline,
        "first page (50 newest)": page(),
        "first page, last 7 days": page(*week),
        "model + status=error, 7 days": page(*week, ("model", "gpt-4o"), ("status", "error")),
        "metadata.prompt_version=v2, 7 days": page(*week, ("metadata.prompt_version", "v2")),
        "guard=flag + cache_status=miss": page(("guard", "flag"), ("cache_status", "miss")),
        "free text, a rare word, 7 days": page(*week, ("q", _word(1234))),
        "free text, a word in every row": page(("q", "answer")),
        "one request in full (GET /v1/logs/{id})": lambda: log_detail(database, READER, "req-13"),
    }
    # `before`: an id about 1,000 rows below the newest of the tenant.
    async with database.connection() as conn:
        row = await (
            await conn.execute(
                "SELECT id FROM request_log WHERE tenant_id = %s"
                " ORDER BY id DESC OFFSET 1000 LIMIT 1",
                (TENANT,),
            )
        ).fetchone()
    queries["paging: the page after 1,000 rows"] = page(("before", str(row["id"] if row else 1)))
    timings: dict[str, list[float]] = {name: [] for name in queries}
    for query in queries.values():
        await query()  # warm: plans cached, pages in memory as the explorer's would be
    for _ in range(repeats):
        for name, query in queries.items():
            started = time.perf_counter()
            await query()
            timings[name].append((time.perf_counter() - started) * 1000.0)
    return timings


def _word(n: int) -> str:
    import hashlib

    return hashlib.md5(str(n).encode()).hexdigest()[:8]


if __name__ == "__main__":
    main_for("bench.explorer")
