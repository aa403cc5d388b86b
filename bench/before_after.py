"""CPU per request of `propylon serve` with the default settings (guard classifier and
semantic cache on), this checkout against another one, alternating in one run.

The other checkout's ``src`` goes first on ``PYTHONPATH`` of its gateway, so it runs that
code and its shipped weights against the same database, fake upstream and request stream.
Used for "the change does not make a request cost more CPU" claims (issue 19: at most +20 %).

Run: ``git archive BASE src | tar -x -C /tmp/base`` then
``python -m bench.before_after /tmp/base/src [rounds]``; prints the ratio after / before.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from bench import gateway, load
from bench.keys import bench_key
from bench.processes import gateway as serve
from bench.suite import Options

REQUESTS = 400


async def compare(base_src: str, rounds: int, workdir: Path) -> dict[str, float]:
    """CPU ms per request of each side, over ``rounds`` alternating rounds."""
    options = Options(workdir=workdir)
    totals = {"before": [0.0, 0.0], "after": [0.0, 0.0]}
    async with gateway.open_rig(options) as (rig, _key):
        for round_ in range(rounds):
            order = ("before", "after") if round_ % 2 == 0 else ("after", "before")
            for label in order:
                env: dict[str, str | None] = {
                    gateway.CLASSIFIER_OFF: None,
                    gateway.SEMANTIC_OFF: None,
                }
                if label == "before":
                    env["PYTHONPATH"] = base_src
                async with serve(
                    workdir, rig.config, rig.database_url, name=f"gw-{label}", env=env
                ) as (url, proc):
                    key = await bench_key(url)
                    target = load.chat_target(url, "bench-chat", key=key.value, deterministic=True)
                    side = await gateway._sequential_side(proc, target, options, REQUESTS)
                    totals[label][0] += side.cpu_s
                    totals[label][1] += side.requests
                    print(f"{label} round {round_}: {side.cpu_ms_per_request():.2f} ms", flush=True)
    return {label: 1000.0 * cpu / n for label, (cpu, n) in totals.items()}


def main() -> None:
    base_src = sys.argv[1]
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    workdir = Path("/tmp/propylon-before-after")
    workdir.mkdir(exist_ok=True)
    result = asyncio.run(compare(base_src, rounds, workdir))
    for label, ms in result.items():
        print(f"{label}: {ms:.3f} ms CPU per request")
    print(f"ratio after / before: {result['after'] / result['before']:.3f}")


if __name__ == "__main__":
    main()
