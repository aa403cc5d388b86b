"""`propylon serve` starts the embedded PostgreSQL on a thread before importing the app; the
start-up that follows takes that server over (one start, not two), and a start that failed
fails start-up with its own error."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from propylon.db import embedded
from propylon.db.embedded import EmbeddedPostgres, start_early


class FakeServer:
    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.cleaned = False

    def get_uri(self) -> str:
        return f"postgresql://postgres@/postgres?host={self.pgdata}"

    def cleanup(self) -> None:
        self.cleaned = True


class GatedGetServer:
    def __init__(self, error: Exception | None = None) -> None:
        self.calls: list[Path] = []
        self.gate = threading.Event()
        self.error = error

    def __call__(self, pgdata: Path, **options: Any) -> FakeServer:
        self.calls.append(pgdata)
        self.gate.wait(timeout=30)
        if self.error is not None:
            raise self.error
        return FakeServer(pgdata)


async def test_start_takes_over_the_early_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    get_server = GatedGetServer()
    monkeypatch.setattr(embedded, "get_server", get_server)
    monkeypatch.setattr(embedded, "create_cluster", lambda pgdata: None)
    start_early(tmp_path)
    start_early(tmp_path)  # once per directory
    get_server.gate.set()
    server = EmbeddedPostgres(tmp_path)
    assert await server.start() == f"postgresql://postgres@/postgres?host={tmp_path / 'pg'}"
    assert get_server.calls == [(tmp_path / "pg").resolve()]
    await server.stop()

    again = EmbeddedPostgres(tmp_path)  # a later start in the process starts as before
    await again.start()
    assert len(get_server.calls) == 2
    await again.stop()


async def test_a_failed_early_start_fails_start_up_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    get_server = GatedGetServer(RuntimeError("initdb: could not create directory"))
    get_server.gate.set()
    monkeypatch.setattr(embedded, "get_server", get_server)
    monkeypatch.setattr(embedded, "create_cluster", lambda pgdata: None)
    start_early(tmp_path)
    with pytest.raises(RuntimeError, match="initdb: could not create directory"):
        await EmbeddedPostgres(tmp_path).start()
