"""A newcomer's first minutes: `propylon serve` with no configuration, in an empty directory,
answers chat and ingests a PDF with the built-in local models."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from propylon.access.keys import looks_like_key
from tests.support import documents
from tests.support.processes import free_port, propylon_process, run_propylon, wait_http

pytestmark = pytest.mark.slow

PAGE_ONE = [
    "The staff handbook covers travel, equipment and leave.",
    "Laptops are replaced every four years.",
]
PAGE_TWO = [
    "Every employee gets twenty-five days of paid leave per year.",
    "Unused leave days expire at the end of March.",
]


async def test_serve_without_configuration_answers_chat_and_ingests_a_pdf(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with propylon_process(
        "serve", "--port", str(port), cwd=tmp_path, log=tmp_path / "serve.log"
    ):
        await wait_http(f"{base}/readyz", timeout=300)  # pgserver has one machine-wide lock
        key = (await run_propylon("keys", "create", "--tenant", "default", cwd=tmp_path)).strip()
        assert looks_like_key(key)

        folder = tmp_path / "docs"
        folder.mkdir()
        (folder / "handbook").write_bytes(documents.pdf([PAGE_ONE, PAGE_TWO]))  # no extension
        (folder / "photo.gif").write_bytes(b"GIF89a not a document")
        env = {"PROPYLON_URL": base, "PROPYLON_API_KEY": key}
        summary = await run_propylon("ingest", str(folder), "--collection", "staff", env=env)
        assert summary.strip() == "1 ingested, 0 already there, 1 not documents, 0 failed"

        async with openai.AsyncOpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0) as sdk:
            listed = {m.id async for m in sdk.models.list()}
            assert listed == {
                "local/extractive",
                "local/all-MiniLM-L6-v2",
                "local/minilm-rerank",
            }
            reply = await sdk.chat.completions.create(
                model="local/extractive",
                messages=[
                    {"role": "system", "content": "The office opens at 8 am. Parking is free."},
                    {"role": "user", "content": "When does the office open?"},
                ],
            )
            assert "8 am" in (reply.choices[0].message.content or "")

            answer = await sdk.chat.completions.create(
                model="rag/staff",
                messages=[{"role": "user", "content": "How many days of paid leave per year?"}],
            )
            assert "twenty-five days" in (answer.choices[0].message.content or "")
            [citation] = [
                c
                for c in (answer.model_extra or {})["propylon"]["citations"]
                if "twenty-five" in (c["quote"] or "")
            ]
            # The quote is on page 2, though its chunk starts on page 1.
            assert citation["page"] == 2
