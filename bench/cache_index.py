"""The semantic cache's first-stage database index: what an insert costs PostgreSQL, and the
candidates its search finds against an exact search.

Once some replica's search falls to the database (no in-memory index, or one over its size),
every cache entry goes into the HNSW index of its static vector, which that replica builds
(``gateway/cache/database_index.py``; migration 0029 dropped the one kept from the start).
The questions are real ones: every text of the four pair sets in ``../shared/data``
(banking77, CLINC150, HANS, numbers swaps), static vectors of the shipped table, 400 held
aside as queries. Three copies of ``cache_entries``' layout, each
with one index, filled through the writer's own insert statement in batches of 500: the
shipped index (built as a replica builds it, its definition read back from the database),
the same at pgvector's default build parameters (the baseline, what 0023 built), and none
(the insert's floor). Searches run on the gateway's own pool, so with its session settings
(``db/database.py``: ``hnsw.ef_search`` 120, iterative scans). Recall: of each query's exact
8 nearest (numpy, cosine), the share the index's search returns; and of those above
``cache.semantic_first_threshold``, the ones a lookup would go on with, the share found.

Run alone: ``python -m bench.cache_index [--quick] [--output docs/benchmarks.md]``.
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from bench.document import stamp
from bench.processes import embedded_database, environment_note
from bench.suite import Options, Section, main_for
from propylon.db.database import EF_SEARCH, Database
from propylon.db.migrator import migrate
from propylon.gateway.cache.database_index import DatabaseIndex
from propylon.gateway.cache.queries import queries
from propylon.gateway.cache.semantic import Embedding
from propylon.local.static import StaticEmbedder
from propylon.settings import CacheSettings

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SOURCES = (
    "pairs-banking77-intent",
    "pairs-clinc150-intent",
    "pairs-hans-adversarial",
    "pairs-perturbed-numbers-swaps",
)
INDEX = "cache_entries_first_hnsw_256"
QUERIES = 400
K = 8
BATCH = 500
WARM_UP = 50
Vectors = NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Measured:
    name: str
    insert_ms: float  # PostgreSQL time per row, batches of BATCH
    query_ms: float
    recall: float  # of the exact K nearest
    above: tuple[int, int]  # (found, exact) among those above the first stage's threshold


def questions() -> list[str]:
    texts: set[str] = set()
    for source in SOURCES:
        with (DATA / source / "pairs.jsonl").open(encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                texts.update((row["a"], row["b"]))
    ordered = sorted(texts)
    random.Random(27).shuffle(ordered)
    return ordered


async def measure(
    database: Database,
    name: str,
    index: str | None,
    corpus: Vectors,
    probes: Vectors,
    threshold: float,
) -> Measured:
    table = f"bench_cache_index_{abs(hash(name)) % 10**8}"
    insert = queries()["insert"].replace("INSERT INTO cache_entries", f"INSERT INTO {table}")
    search = (
        queries()["search_first"]
        .format(vector="vector(256)", dims=256)
        .replace("FROM cache_entries", f"FROM {table}")
    )
    async with database.connection() as conn:
        await conn.execute(f"DROP TABLE IF EXISTS {table}")
        await conn.execute(f"CREATE TABLE {table} (LIKE cache_entries INCLUDING DEFAULTS)")
        if index is not None:
            ours = index.replace(f"INDEX {INDEX} ON public.cache_entries ", f"INDEX ON {table} ")
            if ours == index:
                raise RuntimeError(f"unexpected index definition: {index}")
            await conn.execute(ours)
    rows = [
        {
            "tenant_id": "bench",
            "model": "m",
            "scope": "s",
            "embedder": "e",
            "dims": None,
            "question": str(i),
            "embedding": None,
            "response": "{}",
            "ttl_s": 3600,
            "first_model": "static",
            "first_vector": Embedding(v).literal,  # as the cache's writer makes it
        }
        for i, v in enumerate(corpus)
    ]
    started = time.perf_counter()
    for at in range(0, len(rows), BATCH):
        async with database.connection() as conn, conn.cursor() as cursor:
            await cursor.executemany(insert, rows[at : at + BATCH])
    insert_ms = (time.perf_counter() - started) * 1000 / len(rows)
    found = exact_found = above = above_found = 0
    searching = 0.0
    async with database.autocommit() as conn:
        await conn.execute(f"ANALYZE {table}")
        for probe in probes[:WARM_UP]:  # the table's pages and the plan: not timed
            await conn.execute(search, _search_params(probe))
        for probe in probes:
            started = time.perf_counter()
            cursor = await conn.execute(search, _search_params(probe))
            got = {int(r["question"]) for r in await cursor.fetchall()}
            searching += time.perf_counter() - started
            similarities = corpus @ probe
            for i in np.argsort(-similarities)[:K].tolist():
                exact_found += 1
                found += i in got
                if similarities[i] >= threshold:
                    above += 1
                    above_found += i in got
        query_ms = searching * 1000 / len(probes)
        await conn.execute(f"DROP TABLE {table}")
    return Measured(name, insert_ms, query_ms, found / exact_found, (above_found, above))


async def run(options: Options) -> Section:
    texts = questions()
    corpus_size = options.scaled(8_000, 600)
    static = StaticEmbedder.load()
    probes = static.embed_sync(texts[:QUERIES])
    corpus = static.embed_sync(texts[QUERIES : QUERIES + corpus_size])
    threshold = CacheSettings().semantic_first_threshold
    async with embedded_database(options) as url:
        database = Database(url, max_size=2)
        await database.open()
        try:
            await migrate(database)
            built = DatabaseIndex(database)  # as a replica builds it once the database searches
            built.wanted()
            if not await built.built():
                raise RuntimeError(f"{INDEX} could not be built")
            async with database.autocommit() as conn:
                cursor = await conn.execute(
                    "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (INDEX,)
                )
                row = await cursor.fetchone()
            assert row is not None, f"{INDEX} is not in the database"
            shipped = str(row["indexdef"])
            baseline = shipped[: shipped.index(" WITH (")] + shipped[shipped.index(" WHERE ") :]
            results = [
                await measure(database, name, index, corpus, probes, threshold)
                for name, index in (
                    ("shipped", shipped),
                    ("pgvector's default build (m 16, ef_construction 64)", baseline),
                    ("no index (exact scan)", None),
                )
            ]
        finally:
            await database.close()
    return Section("cache_index", render(results, shipped, len(corpus), threshold, options))


def render(
    results: list[Measured], shipped: str, corpus: int, threshold: float, options: Options
) -> str:
    lines = [
        "## Semantic cache: the first stage's database index",
        "",
        f"{stamp(options.command)} {environment_note()} {corpus:,} real questions (the four "
        f"pair sets' texts) as entries of one scope, {QUERIES} others as lookups; static "
        f"vectors of the shipped table. Shipped index: `{shipped.split(' USING ')[1]}`. "
        f"Every search with the pool's `hnsw.ef_search` ({EF_SEARCH}), as the gateway's.",
        "",
        f"| index | insert, PostgreSQL per row | search | recall of the exact {K} nearest "
        f"| of those ≥ {threshold:.2f} (a lookup's candidates) |",
        "|---|---:|---:|---:|---:|",
    ]
    for m in results:
        found, above = m.above
        lines.append(
            f"| {m.name} | {m.insert_ms:.2f} ms | {m.query_ms:.2f} ms | {100 * m.recall:.1f} % "
            f"| {found} of {above} ({100 * found / max(above, 1):.1f} %) |"
        )
    ours, base = results[0], results[1]
    lines += [
        "",
        f"The shipped index costs {ours.insert_ms / base.insert_ms:.2f} × pgvector's default "
        f"build per insert; its search finds {_share(ours.above)} of the candidates above the "
        f"first stage's threshold, against {_share(base.above)}. (Insert times include each "
        "statement's round trip from this process; the row without an index is the floor.)",
    ]
    return "\n".join(lines)


def _search_params(probe: Vectors) -> dict[str, object]:
    return {
        "tenant_id": "bench",
        "model": "m",
        "scope": "s",
        "embedder": "e",
        "first_model": "static",
        "first_vector": Embedding(probe).literal,
        "limit": K,
    }


def _share(pair: tuple[int, int]) -> str:
    return f"{100 * pair[0] / max(pair[1], 1):.1f} %"


if __name__ == "__main__":
    main_for("bench.cache_index")
