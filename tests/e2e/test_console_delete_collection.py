"""Deleting a collection from the console, at desktop width and on a 390 px phone: the delete
action asks first, dismissing it keeps everything, confirming it removes the collection and its
documents through the API; a collection already deleted elsewhere is said so, not a dead end.
Screenshots go to test-artifacts/console/."""

from __future__ import annotations

import re
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.test_console_browser import ARTIFACTS, CHROMIUM, FLAGS
from tests.e2e.test_console_browser import console_app as console_app
from tests.e2e.test_console_first_contact import VIEWPORTS
from tests.support.console import page_crashes, signed_in_page, upload_to_new_collection
from tests.support.servers import AppServer

pytestmark = pytest.mark.slow


async def _status(server: AppServer, path: str) -> int:
    async with (
        aiohttp.ClientSession(headers=server.headers) as http,
        http.get(server.v1 + path) as response,
    ):
        return response.status


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_deleting_a_collection_asks_first_then_removes_it_and_its_documents(
    console_app: AppServer, tmp_path: Path, viewport: str
) -> None:
    from playwright.async_api import ConsoleMessage, Dialog, Error, expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    width, height = VIEWPORTS[viewport]
    notes = tmp_path / "notes.txt"
    notes.write_text("Owls hunt at night. Their feathers make almost no sound.")
    name = f"old-notes-{viewport}"

    async with signed_in_page(
        console_app.url, console_app.api_key, CHROMIUM, FLAGS, width, height
    ) as page:
        problems: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                problems.append(message.text)

        def on_page_error(error: Error) -> None:
            problems.append(str(error))

        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        await upload_to_new_collection(page, name, notes, "ready")
        collection = page.locator("#collection-list li", has_text=name)
        delete = page.locator("#delete-collection")
        await expect(delete).to_be_visible()
        box = await delete.bounding_box()
        assert box is not None and box["x"] + box["width"] <= width, "the button is on screen"
        await page.screenshot(path=str(ARTIFACTS / f"collection-delete-button-{viewport}.png"))

        # Dismissed: nothing is deleted.
        asked: list[str] = []

        async def dismiss(dialog: Dialog) -> None:
            asked.append(dialog.message)
            await dialog.dismiss()

        page.once("dialog", dismiss)
        await delete.click()
        await expect(page.locator("#collection-title")).to_have_text(name)
        assert asked == [f"Delete the collection {name} with its document? This cannot be undone."]
        assert await _status(console_app, f"/collections/{name}") == 200
        await expect(collection).to_have_count(1)

        # Confirmed: the collection and its documents are gone, in the console and the API.
        page.once("dialog", lambda dialog: dialog.accept())
        await delete.click()
        await expect(page.locator("#collection-message")).to_have_text(
            f"Deleted the collection {name}."
        )
        await expect(collection).to_have_count(0)
        await expect(page.locator("#collection-title")).to_have_text("Select a collection")
        await expect(page.locator("#documents tbody tr")).to_have_count(0)
        await expect(page.locator("#upload")).to_be_hidden()
        await expect(delete).to_be_hidden()
        assert await _status(console_app, f"/collections/{name}") == 404
        scroll = await page.evaluate("document.documentElement.scrollWidth")
        assert scroll <= width, f"the collections tab is {scroll} px wide on a {width} px screen"
        await page.screenshot(path=str(ARTIFACTS / f"collection-deleted-{viewport}.png"))
        assert problems == [], "no errors in the browser console"


async def test_a_collection_deleted_elsewhere_is_said_so_and_leaves_the_list(
    console_app: AppServer,
) -> None:
    from playwright.async_api import expect

    width, height = VIEWPORTS["desktop"]
    async with signed_in_page(
        console_app.url, console_app.api_key, CHROMIUM, FLAGS, width, height
    ) as page:
        crashes = page_crashes(page)
        await page.click("button[data-tab=collections]")
        await page.fill("#collection-name", "shared")
        await page.click("#new-collection button[type=submit]")
        await expect(page.locator("#collection-title")).to_have_text("shared")
        # Open, its (empty) document list loaded: only then does another tab delete it.
        await expect(page.locator("#documents")).to_have_attribute(
            "data-collection", re.compile(r".+")
        )

        # Another tab (or curl) deletes it first.
        async with (
            aiohttp.ClientSession(headers=console_app.headers) as http,
            http.delete(console_app.v1 + "/collections/shared") as response,
        ):
            assert response.status == 200

        page.once("dialog", lambda dialog: dialog.accept())
        await page.click("#delete-collection")
        message = page.locator("#collection-message.error")
        await expect(message).to_contain_text("Could not delete shared: No collection")
        await expect(page.locator("#collection-list li", has_text="shared")).to_have_count(0)
        await expect(page.locator("#collection-title")).to_have_text("Select a collection")
        assert crashes == [], "no uncaught errors in the page"


async def test_opening_a_collection_deleted_meanwhile_says_it_is_gone(
    console_app: AppServer,
) -> None:
    from playwright.async_api import expect

    width, height = VIEWPORTS["desktop"]
    async with aiohttp.ClientSession(headers=console_app.headers) as http:
        async with http.post(console_app.v1 + "/collections", json={"name": "fleeting"}) as made:
            assert made.status == 201
        async with signed_in_page(
            console_app.url, console_app.api_key, CHROMIUM, FLAGS, width, height
        ) as page:
            crashes = page_crashes(page)
            await page.click("button[data-tab=collections]")
            listed = page.locator("#collection-list li", has_text="fleeting")
            await expect(listed).to_have_count(1)
            async with http.delete(console_app.v1 + "/collections/fleeting") as gone:
                assert gone.status == 200
            await listed.click()
            message = page.locator("#collection-message.error")
            await expect(message).to_contain_text("The collection fleeting is gone")
            await expect(listed).to_have_count(0)
            await expect(page.locator("#collection-title")).to_have_text("Select a collection")
            assert crashes == [], "no uncaught errors in the page"
