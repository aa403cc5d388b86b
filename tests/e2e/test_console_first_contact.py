"""The console's first minutes, at desktop width and on a 390 px phone: the key placeholder
matches real keys, the icon is served, a document that fails shows why, and no tab is wider
than the screen. Screenshots go to test-artifacts/console/."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.test_console_browser import ARTIFACTS, CHROMIUM, FLAGS
from tests.e2e.test_console_browser import console_app as console_app
from tests.support.servers import AppServer

pytestmark = pytest.mark.slow

VIEWPORTS = {"desktop": (1280, 900), "phone": (390, 844)}
TABS = ("dashboard", "collections", "playground", "jobs")


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
        page = await browser.new_page(viewport={"width": width, "height": height})
        try:
            await page.goto(console_app.url + "/")
            assert await page.get_attribute("#api-key", "placeholder") == "ppl_…"
            icon = await page.request.get(console_app.url + "/favicon.ico")
            assert icon.status == 200 and icon.headers["content-type"] == "image/svg+xml"

            await page.fill("#api-key", console_app.api_key)
            await page.click("#signin-form button[type=submit]")
            await expect(page.locator("#cards .card").first).to_be_visible()

            await page.click("button[data-tab=collections]")
            await page.fill("#collection-name", f"inbox-{viewport}")
            await page.click("#new-collection button[type=submit]")
            await expect(page.locator("#collection-title")).to_have_text(f"inbox-{viewport}")
            await page.set_input_files("#upload-file", str(broken))
            await page.click("#upload button[type=submit]")
            failed = page.locator("#documents tbody td.state-failed")
            await expect(failed).to_have_count(1, timeout=60_000)
            await expect(failed.locator(".reason")).to_contain_text("damaged")
            await page.screenshot(path=str(ARTIFACTS / f"first-contact-failed-{viewport}.png"))

            for tab in TABS:
                await page.click(f"button[data-tab={tab}]")
                scroll = await page.evaluate("document.documentElement.scrollWidth")
                assert scroll <= width, f"the {tab} tab is {scroll} px wide on a {width} px screen"
                await page.screenshot(path=str(ARTIFACTS / f"first-contact-{tab}-{viewport}.png"))
        finally:
            await browser.close()
