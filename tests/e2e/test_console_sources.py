"""The console shows a collection's sources and their last sync, and "Sync now" syncs one: a
web site served by the test gains a page, and the row says so after the sync."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.test_console_browser import ARTIFACTS, CHROMIUM, FLAGS
from tests.support.console import page_crashes, signed_in_page
from tests.support.servers import AppServer, local_models, serve_app
from tests.support.site import StaticSite, static_site

pytestmark = pytest.mark.slow


@pytest.fixture
async def console_app(database_url: str) -> AsyncIterator[AppServer]:
    models = local_models()
    rag = {"sources": {"url_hosts": ["127.0.0.1"], "requests_per_s": 100.0}}
    async with serve_app(
        database_url=database_url, models=models, jobs={"in_process_worker": True}, rag=rag
    ) as server:
        yield server


@pytest.fixture
async def site() -> AsyncIterator[StaticSite]:
    async with static_site() as served:
        served.pages = {
            "/kb/": b'<html><body><a href="a.html">a</a> <a href="b.html">b</a></body></html>',
            "/kb/a.html": b"<html><body><p>The harbour opens at dawn.</p></body></html>",
        }
        yield served


async def test_the_console_shows_sources_and_syncs_one(
    console_app: AppServer, site: StaticSite, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    async with aiohttp.ClientSession(console_app.v1 + "/", headers=console_app.headers) as http:
        await http.post("collections", json={"name": "kb"})
        body = {"type": "url", "config": {"url": site.url + "/kb/", "mode": "site"}}
        async with http.post("collections/kb/sources", json=body) as response:
            assert response.status == 201

    async with signed_in_page(
        console_app.url, console_app.api_key, CHROMIUM, FLAGS, 1280, 900
    ) as page:
        crashes = page_crashes(page)
        await page.click("button[data-tab=collections]")
        await page.locator("#collection-list li", has_text="kb").click()
        row = page.locator("#sources tbody tr")
        await expect(row).to_have_count(1)
        await expect(row).to_contain_text(f"url: {site.url}/kb/")
        # The first sync (enqueued with the source) ends; the job's event reloads the view.
        await expect(row.locator(".counts")).to_have_text(
            "2 added, 0 replaced, 0 deleted, 0 skipped, 0 rejected", timeout=120_000
        )

        site.pages["/kb/b.html"] = b"<html><body><p>The ferry leaves at noon.</p></body></html>"
        await row.get_by_role("button", name="Sync now").click()
        await expect(row.locator(".counts")).to_have_text(
            "1 added, 0 replaced, 0 deleted, 2 skipped, 0 rejected", timeout=120_000
        )
        await expect(row.locator("td").nth(1)).to_have_text("3")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "collection-sources.png"))
        assert crashes == [], "no uncaught errors in the page"
