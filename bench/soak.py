"""Soak: mixed, bounded load on one `propylon serve` for ten minutes; does memory settle?

Ten closed-loop clients send a mix of requests through the gateway to the fake upstream (which
takes 20 ms, and streams): plain chat (each message new), streamed chat, deterministic chat
that the response cache answers, and embeddings. The gateway's RSS is sampled every 5 s; the
verdict compares the end with the first sample after a warm-up (goal: less than 10 % growth).
Bounded in time and to 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import orjson
import yaml

from bench import load
from bench.document import stamp
from bench.keys import bench_key
from bench.load import MARKER, Target
from bench.processes import embedded_database, fake_upstream, gateway, pin_self, rss_mb
from bench.suite import Options, Section, main_for

CLIENTS = 10
GOAL_GROWTH = 0.10


def write_config(workdir: Path, upstream: str) -> Path:
    deployment = {"provider": "openai", "base_url": f"{upstream}/v1"}
    config = {
        "models": [
            {"name": "soak-chat", "deployments": [{**deployment, "model": "fake-gpt"}]},
            {
                "name": "soak-embed",
                "kind": "embeddings",
                "deployments": [{**deployment, "model": "fake-embedding"}],
            },
        ]
    }
    path = workdir / "soak.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def targets(url: str, key: str) -> dict[str, Target]:
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}

    def chat(text: str, **extra: object) -> bytes:
        body = {"model": "soak-chat", "messages": [{"role": "user", "content": text}]}
        return orjson.dumps({**body, "max_tokens": 24, **extra})

    fresh = f"Tell me about request {MARKER.decode()}."
    return {
        "chat": Target(f"{url}/v1/chat/completions", chat(fresh), headers),
        "stream": Target(f"{url}/v1/chat/completions", chat(fresh, stream=True), headers),
        "cached chat": Target(
            f"{url}/v1/chat/completions",
            chat("What are your opening hours?", temperature=0),
            headers,
        ),
        "embeddings": Target(
            f"{url}/v1/embeddings",
            orjson.dumps({"model": "soak-embed", "input": [fresh, "a second text"]}),
            headers,
        ),
    }


@dataclass(slots=True)
class Tally:
    sent: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)


async def _client(
    session: aiohttp.ClientSession,
    kinds: dict[str, Target],
    until: float,
    tally: Tally,
    rng: random.Random,
) -> None:
    names = list(kinds)
    while time.monotonic() < until:
        name = rng.choice(names)
        target = kinds[name]
        tally.sent[name] = tally.sent.get(name, 0) + 1
        try:
            async with session.post(
                target.url, data=target.payload(), headers=target.headers
            ) as resp:
                await resp.read()
                ok = resp.status == 200
        except Exception:
            ok = False
        if not ok:
            tally.failed[name] = tally.failed.get(name, 0) + 1


async def run(options: Options) -> Section:
    pin_self()
    duration = options.scaled(600, 20)
    warmup = options.scaled(60, 5)
    async with (
        embedded_database(options) as database_url,
        fake_upstream(options.workdir, "--latency-ms", "20", "--tokens-per-second", "2000") as (
            upstream_url,
            _,
        ),
    ):
        config = write_config(options.workdir, upstream_url)
        async with gateway(options.workdir, config, database_url, name="soak") as (url, proc):
            key = (await bench_key(url)).value
            kinds = targets(url, key)
            tally = Tally()
            samples: list[tuple[float, float]] = []
            started = time.monotonic()
            until = started + duration
            async with load.client(CLIENTS) as session:
                clients = [
                    asyncio.create_task(_client(session, kinds, until, tally, random.Random(i)))
                    for i in range(CLIENTS)
                ]
                while time.monotonic() < until:
                    samples.append((time.monotonic() - started, rss_mb(proc.pid)))
                    await asyncio.sleep(5.0)
                await asyncio.gather(*clients)
            samples.append((time.monotonic() - started, rss_mb(proc.pid)))
    return Section("soak", render(samples, warmup, tally, duration, options))


def render(
    samples: list[tuple[float, float]],
    warmup: float,
    tally: Tally,
    duration: float,
    options: Options,
) -> str:
    after = [rss for t, rss in samples if t >= warmup] or [samples[-1][1]]
    base, end, peak = after[0], samples[-1][1], max(rss for _, rss in samples)
    growth = (end - base) / base if base else 0.0
    verdict = "met" if growth < GOAL_GROWTH else "**missed**"
    total = sum(tally.sent.values())
    mix = ", ".join(
        f"{name} {count:,} ({tally.failed.get(name, 0)} failed)"
        for name, count in sorted(tally.sent.items())
    )
    curve = ", ".join(
        f"{t / 60:.1f} min {rss:.0f} MB" for t, rss in samples[:: max(1, len(samples) // 8)]
    )
    quick = " Quick run: numbers are not meaningful." if options.quick else ""
    return f"""## Soak: memory under mixed load

{stamp(options.command)}{quick}

| | value | goal | |
|---|---:|---|---|
| RSS after warm-up ({warmup:g} s) | {base:.0f} MB | | |
| RSS at the end ({duration / 60:.1f} min) | {end:.0f} MB | | |
| growth after warm-up | {growth * 100:+.1f} % | < 10 % | {verdict} |
| peak RSS | {peak:.0f} MB | | |
| requests | {total:,} ({total / duration:.0f}/s) | | |

Mix: {mix}. {CLIENTS} closed-loop clients, each picking a kind at random; the fake upstream
takes 20 ms and streams. RSS samples: {curve}.
"""


if __name__ == "__main__":
    main_for("bench.soak")
