"""The test suite's own safety net: an unrenderable traceback is a failed test, not the end of
the session."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

BROKEN_RENDERER = """
import pytest
from _pytest.nodes import Node

pytest_plugins = ["tests.support.report_fallback"]
_render = Node._repr_failure_py


def _fails_unless_native(self, excinfo, style=None):
    if style != "native":
        raise SystemError("AST constructor recursion depth mismatch (before=1, after=2)")
    return _render(self, excinfo, style=style)


Node._repr_failure_py = _fails_unless_native
"""


def test_a_traceback_pytest_cannot_draw_is_reported_natively(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    pytester.makeconftest(BROKEN_RENDERER)
    pytester.makepyfile(
        """
        def test_fails():
            assert 1 == 2

        def test_after_it_still_runs():
            pass
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.no_fnmatch_line("*INTERNALERROR*")
    result.stdout.fnmatch_lines(["*Traceback (most recent call last)*", "*assert 1 == 2*"])
