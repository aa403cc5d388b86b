"""Hostile input: schemathesis generates requests from the OpenAPI spec against a real
`propylon serve` process and checks that none gets a 5xx. Bounded in count and time.

Every route in the spec is exercised, `POST /v1/ws-tickets` included, with a key that may use
every tenant route and administer its own tenant (`admin`, `logs:read`): the admin API's
tenant-admin rules are fuzzed too, and nothing it sends reaches another tenant."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import aiohttp
import pytest
import yaml

from tests.support.processes import free_port, propylon_process, wait_http

pytestmark = pytest.mark.slow

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")
MIN_CASES = 1000


async def test_no_generated_request_gets_a_server_error(tmp_path: Path, data_dir: Path) -> None:
    upstream_port, port = free_port(), free_port()
    config = tmp_path / "propylon.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "models": [
                    {
                        "name": "gpt-test",
                        "deployments": [
                            {
                                "provider": "openai",
                                "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                            }
                        ],
                    },
                    {
                        "name": "rerank-test",
                        "kind": "rerank",
                        "deployments": [
                            {
                                "provider": "openai",
                                "base_url": f"http://127.0.0.1:{upstream_port}/v1",
                            }
                        ],
                    },
                ]
            }
        )
    )
    common = ("--config", str(config), "--data-dir", str(data_dir))
    base = f"http://127.0.0.1:{port}"
    async with (
        propylon_process("fake-upstream", "--port", str(upstream_port)),
        propylon_process("serve", *common, "--port", str(port), log=tmp_path / "serve.log"),
    ):
        await wait_http(f"{base}/readyz", timeout=60)
        async with aiohttp.ClientSession() as http, http.get(f"{base}/openapi.json") as resp:
            spec = await resp.json()
        assert {
            "/v1/ws-tickets",
            "/admin/keys",
            "/v1/logs",
            "/v1/logs/{log_id}",
            "/v1/feedback",
            "/v1/rerank",
        } <= set(spec["paths"])
        keys = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "propylon",
            "keys",
            "create",
            "--tenant",
            "fuzz",
            *[f"--feature={f}" for f in ("chat", "embeddings", "rag", "logs:read", "admin")],
            *common,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await keys.communicate()
        key = re.search(rb"ppl_[A-Za-z0-9_-]+", out)
        assert key is not None, out
        run = await asyncio.create_subprocess_exec(
            str(SCHEMATHESIS),
            "run",
            f"{base}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "40",
            "--workers",
            "1",
            "--request-timeout",
            "10",
            "--seed",
            "20261127",
            "--header",
            f"Authorization: Bearer {key.group().decode()}",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )
        report, _ = await asyncio.wait_for(run.communicate(), timeout=600)
    text = report.decode(errors="replace")
    (tmp_path / "schemathesis.txt").write_text(text)
    cases = re.search(r"(\d+) generated, (\d+) passed", text)
    assert cases is not None, text[-3000:]
    assert int(cases[1]) >= MIN_CASES, text[-3000:]
    assert int(cases[2]) == int(cases[1]), text[-3000:]
    assert "not_a_server_error" not in text.split("SUMMARY")[-1] or run.returncode == 0, text[
        -3000:
    ]
