"""Steps of the console's browser tests: a signed-in page, a collection with one upload."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.async_api import Locator, Page

WAIT_MS = 30_000  # the longest a browser test waits for the state it expects


@asynccontextmanager
async def signed_in_page(
    url: str,
    key: str,
    chromium: str,
    flags: list[str],
    width: int,
    height: int,
    errors: list[str] | None = None,
) -> AsyncIterator[Page]:
    """Headless Chromium on the console at ``url``, signed in with ``key``; console errors
    and uncaught exceptions are appended to ``errors`` when given."""
    from playwright.async_api import async_playwright, expect

    # A bound on waiting for a state, not a speed claim: on a loaded machine the server and
    # Chromium share the cores, and Playwright's 5 s default has run out before a row drew.
    expect.set_options(timeout=WAIT_MS)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium, args=flags)
        try:
            page = await browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(WAIT_MS)
            if errors is not None:
                page.on(
                    "console",
                    lambda m: errors.append(m.text) if m.type == "error" else None,
                )
                page.on("pageerror", lambda e: errors.append(str(e)))
            await page.goto(url + "/")
            await page.fill("#api-key", key)
            await page.click("#signin-form button[type=submit]")
            await expect(page.locator("#tabs")).to_be_visible()
            await expect(page.locator("#cards .card").first).to_be_visible()
            yield page
        finally:
            await browser.close()


def page_crashes(page: Page) -> list[str]:
    """The page's uncaught exceptions from now on, appended as they happen."""
    crashes: list[str] = []
    page.on("pageerror", lambda error: crashes.append(str(error)))
    return crashes


async def upload_to_new_collection(page: Page, name: str, file: Path, state: str) -> None:
    """Create collection ``name``, upload ``file`` and wait until its row shows ``state``."""
    from playwright.async_api import expect

    await page.click("button[data-tab=collections]")
    await page.fill("#collection-name", name)
    await page.click("#new-collection button[type=submit]")
    await expect(page.locator("#collection-title")).to_have_text(name)
    await page.set_input_files("#upload-file", str(file))
    await page.click("#upload button[type=submit]")
    await expect(page.locator(f"#documents tbody td.state-{state}")).to_have_count(
        1, timeout=60_000
    )


async def ask(page: Page, model: str, question: str, expected: str) -> Locator:
    """Ask ``question`` of ``model`` in the playground; the finished answer, once it holds
    ``expected``."""
    from playwright.async_api import expect

    await page.click("button[data-tab=playground]")
    await page.select_option("#model", model)
    await page.fill("#question", question)
    await page.click("#send")
    answer = page.locator(".msg.assistant .body.done")
    await expect(answer).to_contain_text(expected, timeout=60_000)
    return answer
