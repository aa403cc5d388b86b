"""An agent run in the console, at desktop width and on a 390 px phone: its steps drawn live
(the model's tool call, the call waiting for approval with its exact arguments), approved with
a click, and the run shown finished with its answer. No console errors; screenshots go to
test-artifacts/console/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from propylon.testing import Behaviour, FakeUpstream, ScriptedTurn
from tests.e2e.test_console_browser import ARTIFACTS, CHROMIUM, FLAGS
from tests.integration.test_agent_runs import agent_models
from tests.support.console import signed_in_page
from tests.support.servers import AppServer, serve_app

pytestmark = pytest.mark.slow

VIEWPORTS = {"desktop": (1280, 900), "phone": (390, 844)}


@pytest.fixture
async def agent_console(database_url: str) -> AsyncIterator[tuple[AppServer, FakeUpstream]]:
    async with FakeUpstream() as upstream:
        models = agent_models(upstream)
        async with serve_app(
            database_url=database_url,
            models=models,
            jobs={"in_process_worker": True, "poll_interval_s": 0.2},
            agents={"http_get_hosts": {"*": ["127.0.0.1:9"]}},
        ) as server:
            yield server, upstream


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_an_agent_run_is_drawn_as_its_steps_and_approved_with_a_click(
    agent_console: tuple[AppServer, FakeUpstream], viewport: str
) -> None:
    from playwright.async_api import expect

    server, upstream = agent_console
    url = "http://127.0.0.1:9/closed"  # refused at once: the tool's failure reaches the model
    upstream.set_behaviour(
        Behaviour(
            script=(
                ScriptedTurn(tool="http_get", arguments={"url": url}),
                ScriptedTurn(text="The page could not be fetched."),
            )
        )
    )
    services = server.app.state.services
    key, _ = await services.access.create_key("test", features=["chat", "rag", "tools:network"])
    body: dict[str, Any] = {
        "type": "agent",
        "model": "gpt-agent",
        "input": "What does the page say?",
        "tools": [{"name": "http_get", "approval": "required"}],
    }
    headers = {"Authorization": f"Bearer {key}"}
    async with (
        aiohttp.ClientSession(headers=headers) as http,
        http.post(f"{server.v1}/runs", json=body) as response,
    ):
        assert response.status == 202
        run_id = (await response.json())["id"]

    width, height = VIEWPORTS[viewport]
    async with signed_in_page(server.url, key, CHROMIUM, FLAGS, width, height) as page:
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.click("button[data-tab=jobs]")
        await page.locator("#job-list li.run", has_text=run_id[:8]).click()
        waiting = page.locator("#agent-steps li.agent-tool.state-waiting_for_approval")
        await expect(waiting).to_contain_text(url, timeout=60_000)
        await expect(page.locator("#agent-steps li.agent-model").first).to_contain_text("http_get")
        await page.screenshot(path=str(ARTIFACTS / f"agent-waiting-{viewport}.png"))
        await waiting.locator("button.approve").click()
        outcome = page.locator("#agent-steps li.agent-outcome")
        await expect(outcome).to_contain_text("The page could not be fetched.", timeout=60_000)
        await expect(page.locator("#agent-steps li.agent-tool")).to_contain_text("failed")
        scroll = await page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"the jobs tab is {scroll} px wide on a {width} px screen"
        await page.screenshot(path=str(ARTIFACTS / f"agent-approved-{viewport}.png"))
        assert errors == []
