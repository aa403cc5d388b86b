"""The Node `openai` SDK streams `responses.create` from Propylon.

The SDK is installed with npm, at test time, into `test-artifacts/node-openai/` (ignored by
git, kept between runs). Without `node`/`npm`, or when npm cannot reach its registry, the
test is skipped and says why.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.support.servers import AppServer

pytestmark = pytest.mark.slow

SDK_VERSION = "7.60.0"
INSTALL_DIR = Path(__file__).resolve().parents[2] / "test-artifacts" / f"node-openai-{SDK_VERSION}"

SCRIPT = """
const OpenAI = require(process.env.SDK_PATH);
(async () => {
  const client = new OpenAI({ baseURL: process.env.BASE_URL, apiKey: process.env.API_KEY,
                              maxRetries: 0 });
  const stream = await client.responses.create({
    model: "gpt-test", input: "Tell me a story", stream: true });
  const types = [];
  let text = "";
  let final = null;
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === "response.output_text.delta") text += event.delta;
    if (event.type === "response.completed") final = event.response;
  }
  const finalText = final && final.output[0].content[0].text;
  console.log(JSON.stringify({ types, text, finalText, status: final && final.status }));
})().catch((error) => { console.error(error); process.exit(1); });
"""


async def _run(*command: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def _installed_sdk() -> Path:
    """The SDK's package folder, installed once (into a temporary folder, then renamed, so
    two runs at once never see half an install)."""
    package = INSTALL_DIR / "node_modules" / "openai"
    if package.is_dir():
        return package
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are not installed")
    INSTALL_DIR.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=INSTALL_DIR.parent, prefix=".installing-"))
    code, out, err = await _run(
        "npm",
        "install",
        "--no-audit",
        "--no-fund",
        "--no-save",
        "--prefix",
        str(staging),
        f"openai@{SDK_VERSION}",
    )
    if code != 0:
        shutil.rmtree(staging, ignore_errors=True)
        pytest.skip(f"npm could not install openai@{SDK_VERSION}: {(err or out)[-500:]}")
    try:
        await asyncio.to_thread(staging.rename, INSTALL_DIR)
    except OSError:  # another run finished first: use its install
        shutil.rmtree(staging, ignore_errors=True)
    return package


async def test_node_sdk_streams_a_response(gateway: AppServer, tmp_path: Path) -> None:
    sdk = await _installed_sdk()
    script = tmp_path / "stream.cjs"
    script.write_text(SCRIPT)
    code, out, err = await _run(
        "node",
        str(script),
        env={"SDK_PATH": str(sdk), "BASE_URL": gateway.v1, "API_KEY": gateway.api_key},
    )
    assert code == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["types"][0] == "response.created"
    assert result["types"][-1] == "response.completed"
    assert "response.output_text.delta" in result["types"]
    assert result["text"].startswith("Echo: Tell me a story")
    assert result["finalText"] == result["text"]
    assert result["status"] == "completed"
