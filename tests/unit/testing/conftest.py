"""Fixtures for the fake upstream's own tests: a fresh server and an HTTP session per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from propylon.testing import Behaviour, FakeUpstream

COMPLETION_TOKENS = 8
"""Answer length the tests' `upstream` fixture configures."""


@pytest.fixture
async def upstream() -> AsyncIterator[FakeUpstream]:
    async with FakeUpstream(Behaviour(completion_tokens=COMPLETION_TOKENS)) as fake:
        yield fake


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        yield session
