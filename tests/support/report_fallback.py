"""A pytest plugin: a failure whose report cannot be rendered is reported plainly, not as a
crash of pytest itself.

CPython 3.11.7 can raise ``SystemError: AST constructor recursion depth mismatch`` while pytest
parses source files to draw a deep traceback. Inside ``pytest_runtest_makereport`` that is an
INTERNALERROR, which ends the session and hides every result after it. Here the report is made
again with Python's own traceback format, which reads no source through ``ast``.
"""

from __future__ import annotations

from collections.abc import Generator

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    try:
        return (yield)
    except SystemError:
        option = item.config.option
        style = option.tbstyle
        option.tbstyle = "native"
        try:
            return pytest.TestReport.from_item_and_call(item, call)
        finally:
            option.tbstyle = style
