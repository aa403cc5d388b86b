"""The response cache: exact-hit and semantic-hit latency next to a miss and a bypass.

One `propylon serve` (embedded PostgreSQL, local MiniLM embedder, in-process exact cache)
in front of `propylon fake-upstream` answering at once, so the miss column is the gateway's
own path plus the cache's work on a miss (exact lookup, embedding, scoped search, store), and
the bypass column is the same request with the cache out of the way.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import yaml

from bench import load
from bench.document import stamp
from bench.keys import bench_key
from bench.load import Latencies, Target
from bench.processes import embedded_database, fake_upstream, gateway, pin_self
from bench.suite import Options, Section, main_for

QUESTION = "How do I reverse a list in Python?"
PARAPHRASE = "How can I reverse a list in Python?"
TOPICS = [
    "apples",
    "rivers",
    "engines",
    "castles",
    "violins",
    "glaciers",
    "lanterns",
    "meteors",
    "orchids",
    "tunnels",
]


def _target(root: str, key: str, content: str, *, deterministic: bool = True) -> Target:
    body: dict[str, object] = {
        "model": "bench-chat",
        "messages": [{"role": "user", "content": content}],
        "max_tokens": 16,
    }
    if deterministic:
        body["temperature"] = 0
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    return Target(f"{root}/v1/chat/completions", orjson.dumps(body), headers)


def _question(i: int) -> str:
    """Distinct questions, so each one is a miss all the way down."""
    return (
        f"Write a short note about {TOPICS[i % len(TOPICS)]} and {TOPICS[(i * 7 + 3) % 10]} ({i})"
    )


def write_config(workdir: Path, upstream: str) -> Path:
    config = {
        "models": [
            {
                "name": "bench-chat",
                "deployments": [
                    {"provider": "openai", "base_url": f"{upstream}/v1", "model": "fake-gpt"}
                ],
            }
        ]
    }
    path = workdir / "cache.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def run(options: Options) -> Section:
    pin_self()
    n = options.scaled(300, 20)
    async with (
        embedded_database(options) as database_url,
        fake_upstream(options.workdir) as (upstream_url, _),
    ):
        config = write_config(options.workdir, upstream_url)
        async with gateway(options.workdir, config, database_url, name="cache") as (url, _):
            key = (await bench_key(url)).value
            async with load.client() as session:
                exact = _target(url, key, QUESTION)
                await load.sequential(session, exact, 1)  # store it
                results = {
                    "bypass (not deterministic)": await load.sequential(
                        session, _target(url, key, QUESTION, deterministic=False), n
                    ),
                    "miss": Latencies(),
                    "exact hit": await load.sequential(session, exact, n),
                    "semantic hit": await load.sequential(
                        session, _target(url, key, PARAPHRASE), n
                    ),
                }
                for i in range(n):
                    one = await load.sequential(session, _target(url, key, _question(i)), 1)
                    results["miss"].ms += one.ms
                    results["miss"].errors += one.errors
    return Section("cache", render(results, options))


def render(results: dict[str, Latencies], options: Options) -> str:
    rows = "\n".join(
        f"| {name} | {lat.pct(50):.2f} ms | {lat.pct(95):.2f} ms | {len(lat.ms)} | {lat.errors} |"
        for name, lat in results.items()
    )
    quick = " Quick run: numbers are not meaningful." if options.quick else ""
    return f"""## Response cache latency

{stamp(options.command)}{quick}

Sequential requests through `propylon serve` to a fake upstream that answers at once, so a miss
shows the cache's own cost (exact lookup, MiniLM embedding, scoped pgvector search, store) on top
of the gateway path, and a bypass shows the path without the cache. A semantic hit is a
paraphrase of a cached question (embedding + search + second check, no upstream call).

| request | p50 | p95 | requests | errors |
|---|---|---|---|---|
{rows}
"""


if __name__ == "__main__":
    main_for("bench.cache")
