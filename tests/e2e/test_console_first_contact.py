"""The console's first minutes, at desktop width and on a 390 px phone: the key placeholder
matches real keys, the icon is served, a document that fails shows why and can be deleted, no
tab is wider than the screen, signing out forgets the key; a citation opens on the passage in
its document; the jobs tab lists ingestion jobs after a reload and shows runs end. Screenshots
go to test-artifacts/console/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from propylon.testing import Behaviour, FakeUpstream
from tests.e2e.test_console_browser import ARTIFACTS, CHROMIUM, FLAGS, HANDBOOK
from tests.e2e.test_console_browser import console_app as console_app
from tests.support.console import ask, signed_in_page, upload_to_new_collection
from tests.support.servers import AppServer, serve_app

pytestmark = pytest.mark.slow

VIEWPORTS = {"desktop": (1280, 900), "phone": (390, 844)}
TABS = ("dashboard", "explorer", "versions", "collections", "playground", "jobs")


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_sign_in_see_why_a_document_failed_and_fit_the_screen(
    console_app: AppServer, tmp_path: Path, viewport: str
) -> None:
    from playwright.async_api import async_playwright, expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width, height = VIEWPORTS[viewport]
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 junk")

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            await page.goto(console_app.url + "/")
            assert await page.get_attribute("#api-key", "placeholder") == "ppl_…"
            icon = await page.request.get(console_app.url + "/favicon.ico")
            assert icon.status == 200 and icon.headers["content-type"] == "image/svg+xml"
        finally:
            await browser.close()

    async with signed_in_page(
        console_app.url, console_app.api_key, CHROMIUM, FLAGS, width, height
    ) as page:
        await upload_to_new_collection(page, f"inbox-{viewport}", broken, "failed")
        reason = page.locator("#documents tbody td.state-failed .reason")
        await expect(reason).to_contain_text("damaged")
        await page.screenshot(path=str(ARTIFACTS / f"first-contact-failed-{viewport}.png"))

        for tab in TABS:
            await page.click(f"button[data-tab={tab}]")
            scroll = await page.evaluate("document.documentElement.scrollWidth")
            assert scroll <= width, f"the {tab} tab is {scroll} px wide on a {width} px screen"
            await page.screenshot(path=str(ARTIFACTS / f"first-contact-{tab}-{viewport}.png"))

        # Delete the failed document (confirming), then sign out: the key is forgotten.
        await page.click("button[data-tab=collections]")
        page.once("dialog", lambda dialog: dialog.accept())
        await page.click("#documents tbody button.delete")
        await expect(page.locator("#documents tbody tr")).to_have_count(0)
        await page.click("#sign-out")
        await expect(page.locator("#signin")).to_be_visible()
        await expect(page.locator("#tabs")).to_be_hidden()
        await page.reload()
        await expect(page.locator("#signin")).to_be_visible()
        assert await page.evaluate("sessionStorage.getItem('propylon.key')") is None


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_a_citation_opens_on_the_passage_in_its_document(
    console_app: AppServer, tmp_path: Path, viewport: str
) -> None:
    from playwright.async_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width, height = VIEWPORTS[viewport]
    handbook = tmp_path / "handbook.md"
    handbook.write_text(HANDBOOK)

    async with signed_in_page(
        console_app.url, console_app.api_key, CHROMIUM, FLAGS, width, height
    ) as page:
        await upload_to_new_collection(page, "travel", handbook, "ready")

        question = "How many days do I have to file a refund request?"
        answer = await ask(page, "rag/travel", question, "30 days")
        await answer.locator("a.cite").first.click()

        passage = page.locator("#passage-text")
        await expect(passage.locator("mark")).to_contain_text("30 days")
        # Not just the quote again: the text around it, from the document.
        await expect(passage).to_contain_text("Refunds are paid to the original card")
        box = await page.locator("#passage").bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width
        await page.screenshot(path=str(ARTIFACTS / f"first-contact-passage-{viewport}.png"))


@pytest.fixture
async def slow_console(database_url: str) -> AsyncIterator[AppServer]:
    """The console's server with `slow-gpt`, a fake upstream streaming for about 3 s."""
    async with FakeUpstream(Behaviour(completion_tokens=60, tokens_per_second=20)) as upstream:
        slow = {
            "name": "slow-gpt",
            "deployments": [{"provider": "openai", "base_url": upstream.base_url + "/v1"}],
        }
        async with serve_app(
            database_url=database_url, models=[slow], jobs={"in_process_worker": True}
        ) as server:
            yield server


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_the_jobs_tab_lists_ingestion_jobs_and_follows_runs_to_their_end(
    slow_console: AppServer, viewport: str
) -> None:
    from playwright.async_api import expect

    width, height = VIEWPORTS[viewport]
    headers = {"Authorization": f"Bearer {slow_console.api_key}"}
    async with aiohttp.ClientSession(slow_console.v1 + "/", headers=headers) as http:
        # Work started elsewhere (another tab, the API): an ingestion job and a slow run.
        async with http.post("collections", json={"name": "notes"}) as response:
            assert response.status == 201
        form = aiohttp.FormData()
        form.add_field("file", b"Owls hunt at night.", filename="owls.txt")
        async with http.post("collections/notes/documents", data=form) as response:
            job_id = (await response.json())["job_id"]
        chat = {"model": "slow-gpt", "messages": [{"role": "user", "content": "a story"}]}
        async with http.post("runs", json={"type": "chat", "request": chat}) as response:
            run_id = (await response.json())["id"]

    async with signed_in_page(
        slow_console.url, slow_console.api_key, CHROMIUM, FLAGS, width, height
    ) as page:
        await page.click("button[data-tab=jobs]")
        ingestion = page.locator("#job-list li", has_text=f"rag.ingest {job_id[:8]}")
        await expect(ingestion.locator(".state-succeeded")).to_be_visible(timeout=60_000)
        run = page.locator("#job-list li.run", has_text=run_id[:8])
        # Listed while it runs, and shown succeeded once it has, with no reload.
        await expect(run.locator(".state-succeeded")).to_be_visible(timeout=60_000)
        await page.screenshot(path=str(ARTIFACTS / f"first-contact-jobs-{viewport}.png"))
