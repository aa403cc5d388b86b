"""Stored traces in the console, in real headless Chromium at desktop width and at 390 px: a
`rag/` request's waterfall (one trace: the answer, its retrieval with the chunks and their
scores, the model call and the guard under it), an ingestion job's and a run's, drawn from
`GET /v1/traces`. No console errors. Screenshots go to test-artifacts/console/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.e2e.test_console_browser import ARTIFACTS, CHROMIUM, FLAGS, HANDBOOK
from tests.e2e.test_console_browser import console_app as console_app
from tests.support.console import signed_in_page, upload_to_new_collection
from tests.support.servers import AppServer
from tests.support.waiting import eventually

pytestmark = pytest.mark.slow


async def post(server: AppServer, path: str, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The request id and the body of the answer."""
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{server.v1}{path}", json=body, headers=headers) as response,
    ):
        assert response.status in (200, 202), await response.text()
        found: dict[str, Any] = await response.json()
        return response.headers["x-request-id"], found


async def get(server: AppServer, path: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {server.api_key}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{server.v1}{path}", headers=headers) as response,
    ):
        assert response.status == 200, await response.text()
        found: dict[str, Any] = await response.json()
        return found


async def stored(server: AppServer, request_id: str) -> None:
    """Wait until the request's trace is written (the writer flushes about once a second)."""
    headers = {"Authorization": f"Bearer {server.api_key}"}

    async def found() -> bool | None:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"{server.v1}/traces?request_id={request_id}", headers=headers) as response,
        ):
            return True if (await response.json())["data"] else None

    await eventually(found, f"the trace of {request_id}")


@pytest.mark.parametrize(("width", "height", "name"), [(1280, 900, "desktop"), (390, 844, "390")])
async def test_a_rag_request_a_job_and_a_run_are_drawn_from_their_stored_traces(
    console_app: AppServer, tmp_path: Path, width: int, height: int, name: str
) -> None:
    from playwright.async_api import expect

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    handbook = tmp_path / "handbook.md"
    handbook.write_text(HANDBOOK)
    key, _ = await console_app.app.state.services.access.create_key(
        "test", features=["chat", "embeddings", "rag", "logs:read"]
    )
    errors: list[str] = []
    async with signed_in_page(
        console_app.url, str(key), CHROMIUM, FLAGS, width, height, errors
    ) as page:
        # An ingestion job: its trace under its events.
        await upload_to_new_collection(page, "handbook", handbook, "ready")
        await page.click("button[data-tab=jobs]")
        (document,) = (await get(console_app, "/collections/handbook/documents"))["data"]
        await page.locator("#job-list li", has_text=document["job_id"][:8]).click()
        job_trace = page.locator("#job-trace svg.waterfall")
        await expect(job_trace.locator("text", has_text="job rag.ingest")).to_have_count(1)
        await expect(job_trace.locator("rect.span")).not_to_have_count(1)
        await page.screenshot(path=str(ARTIFACTS / f"traces-{name}-1-job.png"), full_page=True)

        # A rag/ request: one trace of retrieval, model call and guard, with the chunks found.
        question = "Within how many days must a refund request be filed?"
        body = {"model": "rag/handbook", "messages": [{"role": "user", "content": question}]}
        request_id, _ = await post(console_app, "/chat/completions", body)
        await stored(console_app, request_id)
        await page.click("button[data-tab=explorer]")
        await page.fill("#f-text", "filed")
        await page.click("#filters button[type=submit]")
        rows = page.locator("#requests tbody tr", has_text="extractive")
        await expect(rows).not_to_have_count(0)
        await rows.first.click()
        waterfall = page.locator("#request-detail svg#waterfall")
        for span in ("rag.answer", "propylon.retrieve", "propylon.guard", "propylon.verify"):
            await expect(waterfall.locator("text", has_text=span)).to_have_count(1)
        await expect(page.locator("#request-detail figcaption")).to_contain_text("trace ")
        await expect(page.locator("#request-detail table.retrieval tbody tr")).not_to_have_count(0)
        wide = await page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert wide <= 0, f"the page scrolls sideways by {wide} px"
        await page.screenshot(path=str(ARTIFACTS / f"traces-{name}-2-rag.png"), full_page=True)

        # A run: the job's span, the run's, a span per step and the model call below.
        _, run = await post(
            console_app,
            "/runs",
            {
                "type": "chat",
                "request": {
                    "model": "local/extractive",
                    "messages": [{"role": "user", "content": "Refunds take how long?"}],
                },
            },
        )
        await page.click("button[data-tab=jobs]")
        await page.locator("#job-list li", has_text=f"run chat {run['id'][:8]}").click()
        run_trace = page.locator("#job-trace svg.waterfall")
        await expect(run_trace.locator("text", has_text="run chat")).to_have_count(
            1, timeout=30_000
        )
        await expect(run_trace.locator("text", has_text="run.step")).not_to_have_count(0)
        await page.screenshot(path=str(ARTIFACTS / f"traces-{name}-3-run.png"), full_page=True)

    assert errors == [], errors
