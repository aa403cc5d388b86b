"""The console's observability views in real headless Chromium, at desktop width and at
390 px: the requests explorer (filters, a request's chat, trace and route), the prompt
versions compared (a table, and A and B over time), thumbs in the playground and the
dashboard's charts. No console errors. Screenshots go to test-artifacts/console/."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from propylon.testing import FakeUpstream
from tests.e2e.test_console_browser import ARTIFACTS, CHROMIUM, FLAGS
from tests.integration.observe.support import call, chat, records, serve
from tests.support.console import ask, signed_in_page
from tests.support.servers import AppServer

pytestmark = pytest.mark.slow

TOOL = {"type": "function", "function": {"name": "lookup_order", "parameters": {}}}


@pytest.fixture
async def server(database_url: str, upstream: FakeUpstream) -> AsyncIterator[AppServer]:
    async with serve(database_url, upstream) as running:
        yield running


async def traffic(server: AppServer) -> str:
    """Requests of two prompt versions, one with a tool call, one with feedback; the key the
    console signs in with (it may read content: `logs:read`)."""
    for n in range(3):
        v = "v1" if n % 2 else "v2"
        await chat(
            server, f"where is order {n}?", metadata={"prompt_name": "orders", "prompt_version": v}
        )
    tool = await chat(
        server,
        "find the aardvark order",
        tools=[TOOL],
        tool_choice="required",
        metadata={"prompt_name": "orders", "prompt_version": "v2"},
    )
    await call(
        server,
        "POST",
        "/v1/feedback",
        json={"request_id": tool.headers["x-request-id"], "score": "up"},
    )
    await records(server, 4, "origin=user")
    key, _ = await server.app.state.services.access.create_key(
        "test", features=["chat", "embeddings", "rag", "logs:read"]
    )
    return str(key)


@pytest.mark.parametrize(("width", "height", "name"), [(1280, 900, "desktop"), (390, 844, "390")])
async def test_explorer_versions_and_feedback_views(
    server: AppServer, width: int, height: int, name: str
) -> None:
    from playwright.async_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    key = await traffic(server)
    errors: list[str] = []
    async with signed_in_page(server.url, key, CHROMIUM, FLAGS, width, height, errors) as page:
        await expect(page.locator("#chart-latency path")).not_to_have_count(0)
        await page.screenshot(
            path=str(ARTIFACTS / f"explorer-{name}-1-dashboard.png"), full_page=True
        )

        await page.click("button[data-tab=explorer]")
        rows = page.locator("#requests tbody tr")
        await expect(rows).to_have_count(4)
        await page.screenshot(path=str(ARTIFACTS / f"explorer-{name}-2-list.png"), full_page=True)

        await page.fill("#f-metadata", "prompt_version=v1")
        await page.click("#filters button[type=submit]")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_contain_text("orders@v1")
        await page.fill("#f-metadata", "")
        await page.fill("#f-text", "aardvark")
        await page.click("#filters button[type=submit]")
        # One row before and after: wait for the list to be the text filter's (the aardvark
        # request is a v2 one), not for a count the previous list already has.
        await expect(rows.first).to_contain_text("orders@v2")
        await expect(rows).to_have_count(1)
        await rows.first.click()
        detail = page.locator("#request-detail")
        await expect(detail.locator(".msg.user")).to_contain_text("find the aardvark order")
        await expect(detail.locator("pre.tools")).to_contain_text("lookup_order")
        await expect(detail.locator("#waterfall rect.span")).not_to_have_count(0)
        await expect(detail).to_contain_text("▲ up")
        wide = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 0, f"the page scrolls sideways by {wide} px"
        await page.screenshot(path=str(ARTIFACTS / f"explorer-{name}-3-detail.png"), full_page=True)

        await page.click("button[data-tab=versions]")
        await expect(page.locator("#versions-table tbody tr")).to_have_count(2)
        await expect(page.locator("#compare tbody tr").first).to_contain_text("requests")
        # Each compared version over time: percentiles as lines, values in their units.
        latency = page.locator("#v-chart-latency")
        await expect(latency.locator("text.legend")).to_have_count(4)  # v1/v2 × p50/p95
        await expect(latency.locator("circle")).not_to_have_count(0)
        await expect(latency.locator("text", has_text=" ms").first).to_be_visible()
        await expect(page.locator("#v-chart-requests circle")).not_to_have_count(0)
        await expect(page.locator("#v-chart-feedback text.legend")).to_have_count(2)
        await page.screenshot(
            path=str(ARTIFACTS / f"explorer-{name}-4-versions.png"), full_page=True
        )

        answer = await ask(page, "gpt-test", "a question worth a thumb", "")
        thumbs = page.locator(".feedback button[aria-label='thumbs up']")
        await thumbs.last.click()
        await expect(page.locator(".feedback").last).to_contain_text("thanks")
        assert await answer.count() >= 1
        await page.screenshot(path=str(ARTIFACTS / f"explorer-{name}-5-thumbs.png"), full_page=True)

    assert errors == [], errors
    thumbed = await records(server, 1, "origin=user&q=thumb")
    assert thumbed[0]["feedback_score"] == 1.0
