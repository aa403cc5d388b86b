"""The web console in real headless Chromium (Debian's package, driven by Playwright): sign in,
upload a document and watch its ingestion reach 100 %, ask the collection a question, see the
answer stream in with a citation, and open the cited passage. Screenshots go to
test-artifacts/console/."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.console import ask, signed_in_page, upload_to_new_collection
from tests.support.servers import AppServer, local_models, serve_app

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARTIFACTS = Path(__file__).parents[2] / "test-artifacts" / "console"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
HANDBOOK = """# Travel handbook

## Refunds

Refund requests must be filed within 30 days of the trip. Refunds are paid to the original
card within five business days.

## Luggage

Each traveller may check one bag of up to 23 kilograms. Oversized items cost 40 euros extra.
"""

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("CI must install Debian's chromium (see .ci/run)")
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)


@pytest.fixture
async def console_app(database_url: str) -> AsyncIterator[AppServer]:
    models = local_models()
    async with serve_app(
        database_url=database_url, models=models, jobs={"in_process_worker": True}
    ) as server:
        yield server


async def test_upload_watch_progress_ask_and_open_a_citation(
    console_app: AppServer, tmp_path: Path
) -> None:
    from playwright.async_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    handbook = tmp_path / "handbook.md"
    handbook.write_text(HANDBOOK)

    async with signed_in_page(
        console_app.url, console_app.api_key, CHROMIUM, FLAGS, 1280, 900
    ) as page:
        await page.screenshot(path=str(ARTIFACTS / "1-dashboard.png"))

        await upload_to_new_collection(page, "handbook", handbook, "ready")
        bar = page.locator("#documents tbody progress")
        assert await bar.get_attribute("value") == "1", "progress reached 100 %"
        await page.screenshot(path=str(ARTIFACTS / "2-ingested.png"))

        question = "How many days do I have to file a refund request?"
        answer = await ask(page, "rag/handbook", question, "30 days")
        citation = answer.locator("a.cite").first
        await expect(citation).to_be_visible()
        await page.screenshot(path=str(ARTIFACTS / "3-answer.png"))

        await citation.click()
        await expect(page.locator("#passage")).to_be_visible()
        await expect(page.locator("#passage-text")).to_contain_text("30 days")
        await page.screenshot(path=str(ARTIFACTS / "4-citation.png"))

        await page.click("button[data-tab=dashboard]")
        # The request log is written in the background: refresh until it shows up.
        requests = page.locator("#cards .card .value").first
        for _ in range(30):
            await page.click("#refresh-stats")
            await page.wait_for_timeout(500)
            if (await requests.text_content()) not in ("0", None):
                break
        await expect(requests).not_to_have_text("0")
        # The ingestion's embeddings and screening are Propylon's own calls: counted on their
        # own card, never in the user traffic's requests and latency above.
        internal = page.locator(
            "#cards .card", has=page.locator(".label", has_text="Internal calls")
        ).locator(".value")
        await expect(internal).not_to_have_text("0")
        await page.screenshot(path=str(ARTIFACTS / "5-dashboard-after.png"))
