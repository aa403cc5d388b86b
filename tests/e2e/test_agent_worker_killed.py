"""An agent run survives `kill -9` of its worker: the next worker resumes at the step that was
in flight and never repeats a tool call that completed."""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml

from propylon.testing import Behaviour, FakeUpstream, ScriptedTurn
from tests.integration.test_agent_runs import agent_models, call
from tests.integration.test_runs import events
from tests.support.databases import PostgresServer, create_database
from tests.support.processes import propylon_process
from tests.support.servers import serve_app
from tests.support.site import Site, counting_site
from tests.support.waiting import eventually, finished

pytestmark = pytest.mark.slow

JOBS = {
    "in_process_worker": False,
    "lease_s": 2.0,
    "heartbeat_s": 0.3,
    "reap_interval_s": 0.3,
    "poll_interval_s": 0.2,
    "retry_base_s": 0.1,
}


@pytest.fixture
async def site() -> AsyncIterator[Site]:
    async with counting_site(lambda site, path: "The pump ships in a blue box.") as found:
        yield found


async def test_kill_9_after_a_tool_call_resumes_without_calling_the_tool_again(
    pg_server: PostgresServer, tmp_path: Path, site: Site
) -> None:
    host, hits = site.host, site.hits
    async with FakeUpstream() as upstream:
        settings: dict[str, Any] = {
            "models": agent_models(upstream),
            "jobs": JOBS,
            "agents": {"http_get_hosts": {"*": [host]}},
            "local_models": False,
        }
        config = tmp_path / "propylon.yaml"
        config.write_text(yaml.safe_dump(settings))
        database_url = await create_database(pg_server)
        env = {"DATABASE_URL": database_url}
        # The second model call hangs, so the worker is surely inside it when it is killed.
        upstream.set_behaviour(
            Behaviour(
                script=(
                    ScriptedTurn(tool="http_get", arguments={"url": f"http://{host}/once"}),
                    ScriptedTurn(text="Blue box.", delay_ms=600_000),
                )
            )
        )
        async with serve_app(database_url=database_url, **settings) as server:
            services = server.app.state.services
            features = ["chat", "rag", "tools:network"]
            key, _ = await services.access.create_key("test", features=features)
            body = {
                "type": "agent",
                "model": "gpt-agent",
                "input": "How does the pump ship?",
                "tools": ["http_get"],
            }
            run = await call(server, "POST", "/runs", body, key=key)
            fetch = partial(call, server, "GET", f"/runs/{run['id']}")
            first_log = tmp_path / "worker-1.log"
            async with propylon_process(
                "worker", "--config", str(config), env=env, log=first_log
            ) as first:

                async def in_second_model_call() -> bool | None:
                    steps = (await fetch())["steps"]
                    return (len(steps) == 3 and steps[2]["state"] == "running") or None

                await eventually(in_second_model_call, "the worker to be in its 2nd model call")
                first.send_signal(signal.SIGKILL)
                await first.wait()
            assert hits["/once"] == 1, (await fetch(), first_log.read_text()[-3000:])
            upstream.set_behaviour(
                Behaviour(
                    script=(
                        ScriptedTurn(tool="http_get", arguments={"url": f"http://{host}/once"}),
                        ScriptedTurn(text="Blue box."),
                    )
                )
            )
            second_log = tmp_path / "worker-2.log"
            async with propylon_process("worker", "--config", str(config), env=env, log=second_log):
                done = await finished(fetch, "the run to end", frozenset({"succeeded", "failed"}))
            assert done["state"] == "succeeded", (done["error"], second_log.read_text()[-2000:])
            assert done["result"]["output"]["text"] == "Blue box."
            assert hits["/once"] == 1  # the completed tool call was not made again
            kinds = [(s["type"], s["state"]) for s in done["steps"]]
            assert kinds == [("model", "succeeded"), ("tool", "succeeded"), ("model", "succeeded")]
            feed = await events(server, run["id"])
            starts = [(e["type"], e["data"]) for e in feed if e["type"].startswith("agent_")]
            assert starts == [("agent_started", {"at_step": 0}), ("agent_resumed", {"at_step": 2})]
            assert sum(1 for e in feed if e["type"] == "tool_started") == 1
