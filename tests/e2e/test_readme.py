"""The README is a test: its shell and Python examples run, in order, against a fresh server.

The examples run in a scratch copy of the checkout (``config/``, ``docs/``, and the
running venv), as a newcomer runs them in theirs. Three things stand in for what a
newcomer does by hand: ``make run [CONFIG=…]`` (re)starts ``propylon serve`` with that
configuration (``make test`` is this suite, so it is not run again); a command ending in ``&``
runs in the background until the test ends; and the README's ports (8000 for Propylon, 9100
for the fake upstream) become free ones. Shell examples share one environment (what one
exports, the next sees), and ``curl`` fails on an HTTP error, so an example that answers 4xx
or 5xx fails the test. A block right after ``<!-- readme-test: skip (why) -->`` is not run.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import shutil
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.processes import free_port, wait_http

pytestmark = pytest.mark.slow

CHECKOUT = Path(__file__).parents[2]
README = CHECKOUT / "README.md"
FENCE = re.compile(r"^(?P<indent>\s*)```(?P<lang>\w*)\s*$")
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\b")
HEREDOC = re.compile(r"<<-?\s*'?(\w+)'?")
PRELUDE = """set -euo pipefail
source "$README_ENV"
curl() { command curl --fail-with-body -sS "$@"; echo; }
"""
STEP_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Example:
    lang: str  # "sh" or "python"
    code: str
    line: int  # where it starts in README.md


def readme_examples(text: str) -> list[Example]:
    """The ``sh`` and ``python`` blocks of ``text``, in order, without skipped ones."""
    examples: list[Example] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        indent, lang, start = opening["indent"], opening["lang"], i
        body: list[str] = []
        i += 1
        while i < len(lines) and lines[i].strip() != "```":
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
        if lang in ("sh", "python") and not SKIP.search(previous):
            examples.append(Example(lang, "\n".join(body) + "\n", start + 1))
    return examples


def commands(code: str) -> list[str]:
    """Shell commands of a block: continuation lines joined, here-documents kept whole."""
    out: list[str] = []
    lines = code.splitlines()
    i = 0
    while i < len(lines):
        command = lines[i]
        while command.endswith("\\") and i + 1 < len(lines):
            i += 1
            command += "\n" + lines[i]
        heredoc = HEREDOC.search(command)
        if heredoc is not None:
            while i + 1 < len(lines) and lines[i].strip() != heredoc.group(1):
                i += 1
                command += "\n" + lines[i]
        if command.strip():
            out.append(command)
        i += 1
    return out


class Newcomer:
    """Runs the README's examples in ``home`` the way its reader would."""

    def __init__(self, home: Path, port: int, fake_port: int, stack: AsyncExitStack) -> None:
        self.home = home
        self.port = port
        self.fake_port = fake_port
        self.stack = stack
        self.server: AsyncExitStack | None = None
        self.env_file = home / ".readme-env"
        self.env_file.write_text("")
        self.env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("PROPYLON_") and name not in ("DATABASE_URL", "REDIS_URL")
        } | {"README_ENV": str(self.env_file)}
        self.output: list[tuple[Example, str]] = []

    def localise(self, code: str) -> str:
        return code.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}").replace(
            "9100", str(self.fake_port)
        )

    async def run(self, example: Example) -> None:
        code = self.localise(example.code)
        if example.lang == "python":
            script = f"exec .venv/bin/python - <<'README_PY'\n{code}README_PY\n"
            self.output.append((example, await self.bash(script, example)))
            return
        pending: list[str] = []
        printed: list[str] = []
        for command in commands(code):
            words = shlex.split(command.split("#", 1)[0]) if command.startswith("make") else []
            if (
                words[:2] == ["make", "run"]
                or words[:2] == ["make", "test"]
                or command.rstrip().endswith("&")
            ):
                if pending:
                    printed.append(await self.bash("\n".join(pending), example))
                    pending = []
                if words[:2] == ["make", "run"]:
                    await self.make_run(dict(w.split("=", 1) for w in words[2:] if "=" in w))
                elif command.rstrip().endswith("&"):
                    await self.background(command.rstrip().removesuffix("&"))
            else:
                pending.append(command)
        if pending:
            printed.append(await self.bash("\n".join(pending), example))
        self.output.append((example, "".join(printed)))

    async def bash(self, script: str, example: Example) -> str:
        full = PRELUDE + script + '\nexport -p > "$README_ENV"\n'
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            full,
            cwd=self.home,
            env=self.env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await asyncio.wait_for(proc.communicate(), STEP_TIMEOUT_S)
        text = out.decode()
        if proc.returncode != 0:
            raise AssertionError(f"README.md line {example.line} failed:\n{script}\n---\n{text}")
        return text

    async def make_run(self, variables: dict[str, str]) -> None:
        if self.server is not None:
            await self.server.aclose()
        config = variables.get("CONFIG", "config/local.yaml")
        port = variables.get("PORT", str(self.port))
        self.server = AsyncExitStack()
        log = self.home / f"serve-{port}.log"
        await self.server.enter_async_context(
            process(
                ".venv/bin/propylon",
                "serve",
                "--config",
                config,
                "--port",
                port,
                home=self,
                log=log,
            )
        )
        await wait_http(f"http://127.0.0.1:{port}/readyz", timeout=300)
        self.stack.push_async_callback(self.server.aclose)

    async def background(self, command: str) -> None:
        await self.stack.enter_async_context(
            process("bash", "-c", f"exec {command}", home=self, log=self.home / "background.log")
        )
        if (port := re.search(r"--port\s+(\d+)", command)) is not None:
            await wait_port(int(port.group(1)))


@asynccontextmanager
async def process(*args: str, home: Newcomer, log: Path) -> AsyncIterator[None]:
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *args, cwd=home.home, env=home.env, stdout=out, stderr=out
        )
        try:
            yield
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


async def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"nothing listens on port {port} after {timeout} s") from None
            await asyncio.sleep(0.1)
        else:
            writer.close()
            await writer.wait_closed()
            return


def scratch_checkout(home: Path) -> None:
    for folder in ("config", "docs"):
        shutil.copytree(CHECKOUT / folder, home / folder)
    # The venv running this suite (``.venv``, or ``.venv-latest`` under ``make test-latest``).
    (home / ".venv").symlink_to(Path(sys.prefix))


def test_readme_examples_are_extracted_in_order_with_here_documents_whole() -> None:
    examples = readme_examples(README.read_text("utf-8"))
    assert examples[0].code.startswith("make run")
    assert all(example.lang in ("sh", "python") for example in examples)
    assert not any("DATABASE_URL=postgresql://" in example.code for example in examples)
    fake = next(e for e in examples if "fake-upstream" in e.code)
    heredoc = next(c for c in commands(fake.code) if c.startswith("cat >"))
    assert heredoc.endswith("YAML") and "base_url" in heredoc


async def test_every_readme_example_works_against_a_fresh_server(tmp_path: Path) -> None:
    home = tmp_path / "checkout"
    home.mkdir()
    scratch_checkout(home)
    async with AsyncExitStack() as stack:
        newcomer = Newcomer(home, free_port(), free_port(), stack)
        for example in readme_examples(README.read_text("utf-8")):
            await newcomer.run(example)
    eiffel = next(t for e, t in newcomer.output if "Eiffel" in e.code)
    assert "The Eiffel Tower is 330 metres tall. [1]" in eiffel
    assert "1889" not in eiffel  # the sentence that does not answer is not quoted
    leave = next(t for e, t in newcomer.output if "rag/handbook" in e.code)
    assert "Every employee gets 25 days of paid leave a year." in leave
    assert len(newcomer.output) == len(readme_examples(README.read_text("utf-8")))
