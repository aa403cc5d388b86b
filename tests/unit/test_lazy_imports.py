"""Libraries only some processes use are imported when used, not by every `propylon serve`
(each adds megabytes of RSS and start-up time: see docs/benchmarks.md, cold start)."""

import subprocess
import sys

# mcp: agent runs calling MCP servers; onnxruntime: the local MiniLM, loaded on first use.
LAZY = ("redis", "pypdfium2", "lxml", "docx", "selectolax", "mcp", "onnxruntime")


def test_the_app_imports_redis_the_document_parsers_mcp_and_onnxruntime_only_when_used() -> None:
    code = (
        "import sys, propylon.app, propylon.cli; "
        f"print(','.join(m for m in {LAZY!r} if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == ""


def test_serve_keeps_blas_on_one_thread_set_before_numpy_is_imported() -> None:
    code = (
        "import os, sys\n"
        "os.environ.pop('OPENBLAS_NUM_THREADS', None)\n"
        "import propylon.cli as cli\n"
        "from propylon import cli_edge\n"
        "cli._one_blas_thread()\n"
        "cli_edge.settings(None)\n"
        "from propylon.db.embedded import start_early\n"
        "print('numpy' in sys.modules, os.environ['OPENBLAS_NUM_THREADS'])\n"
        "os.environ['OPENBLAS_NUM_THREADS'] = '3'\n"
        "cli._one_blas_thread()\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.split() == ["False", "1", "3"], "numpy not loaded yet; the operator wins"
