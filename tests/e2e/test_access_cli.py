"""`propylon tenants …` and `propylon keys …` on the database `serve` uses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from propylon.access.keys import looks_like_key
from tests.support.processes import complete_propylon, run_propylon

pytestmark = pytest.mark.slow


async def test_tenants_and_keys_from_the_command_line(database_url: str) -> None:
    env = {"DATABASE_URL": database_url}
    made = json.loads(await run_propylon("tenants", "create", "acme", "--rpm", "60", env=env))
    assert made["name"] == "acme"
    assert made["limits"] == {"rpm": 60}

    # `keys create` makes the tenant when it does not exist yet, and prints only the key.
    key = (
        await run_propylon(
            "keys",
            "create",
            "--tenant",
            "newco",
            "--name",
            "ci",
            "--model",
            "gpt-4o",
            "--tpm",
            "1000",
            "--budget-usd",
            "5",
            env=env,
        )
    ).strip()
    assert looks_like_key(key)

    tenants = json.loads(await run_propylon("tenants", "list", env=env))
    assert [(t["name"], t["active_keys"]) for t in tenants] == [("acme", 0), ("newco", 1)]

    [listed] = json.loads(await run_propylon("keys", "list", "--tenant", "newco", env=env))
    assert listed["prefix"] == key[:12]
    assert listed["models"] == ["gpt-4o"]
    assert listed["limits"] == {"tpm": 1000}
    assert listed["budget"] == {"period": "month", "cost_usd": 5.0}
    assert key not in json.dumps(listed)

    usage = json.loads(await run_propylon("keys", "usage", key[:12], env=env))
    assert usage["days"] == []

    revoked = json.loads(await run_propylon("keys", "revoke", "ci", env=env))
    assert revoked["revoked_at"] is not None
    tenants = json.loads(await run_propylon("tenants", "list", env=env))
    assert {t["name"]: t["active_keys"] for t in tenants}["newco"] == 0


async def test_an_unknown_key_reference_is_a_clear_error(database_url: str) -> None:
    with pytest.raises(RuntimeError, match="No API key matches 'nothing'"):
        await run_propylon("keys", "revoke", "nothing", env={"DATABASE_URL": database_url})


@pytest.mark.parametrize("command", [("keys", "list"), ("migrate",)])
async def test_a_database_that_does_not_answer_is_one_clear_line_not_a_traceback(
    command: tuple[str, ...],
) -> None:
    """Both waited 30 s, then printed a traceback ending in PoolTimeout; a URL that is not
    PostgreSQL's was retried as a socket path."""
    refused = {"DATABASE_URL": "postgresql://nobody:secret@127.0.0.1:1/x"}
    done = await complete_propylon(*command, env=refused)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "error: Cannot connect to the database at 127.0.0.1:1/x" in done.stderr
    assert "Connection refused" in done.stderr and "secret" not in done.stderr
    done = await complete_propylon(*command, env={"DATABASE_URL": "notaurl"})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "DATABASE_URL is not a PostgreSQL connection URL" in done.stderr


async def test_keys_create_refuses_a_directory_without_a_database(tmp_path: Path) -> None:
    # Run where no `propylon serve` ever ran: no new empty database, a clear way out instead.
    done = await complete_propylon("keys", "create", "--tenant", "default", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    assert f"no database in {(tmp_path / '.propylon').resolve()}" in done.stderr
    assert "--create-database" in done.stderr
    assert not (tmp_path / ".propylon").exists()


async def test_keys_create_says_which_database_and_tenant(database_url: str) -> None:
    done = await complete_propylon(
        "keys", "create", "--tenant", "acme", env={"DATABASE_URL": database_url}
    )
    assert done.returncode == 0, done.stderr
    assert "Database: DATABASE_URL (" in done.stderr
    assert "for tenant 'acme'." in done.stderr
    assert looks_like_key(done.stdout.strip())


@pytest.mark.parametrize(
    ("option", "args"),
    [
        ("--name", ["keys", "create", "--tenant", "acme", "--name", b"caf\xe9"]),
        ("--tenant", ["keys", "create", "--tenant", b"caf\xe9", "--name", "ci"]),
        ("name", ["tenants", "create", b"caf\xe9"]),
        ("--model", ["keys", "create", "--tenant", "acme", "--model", b"caf\xe9"]),
        ("--feature", ["keys", "create", "--tenant", "acme", "--feature", b"caf\xe9"]),
        ("--tenant", ["keys", "list", "--tenant", b"caf\xe9"]),
        ("ref", ["keys", "revoke", b"caf\xe9"]),
        ("ref", ["keys", "usage", b"caf\xe9"]),
    ],
)
async def test_text_whose_bytes_are_not_utf8_is_refused_naming_its_option(
    database_url: str, option: str, args: list[str | bytes]
) -> None:
    """``caf\\xe9`` is Latin-1: Python hands it over as ``caf\\udce9``, a lone surrogate
    PostgreSQL cannot store. Before, the command died in a traceback from the driver."""
    env = {"DATABASE_URL": database_url, "PYTHONUTF8": "1", "COLUMNS": "200"}
    done = await complete_propylon(*args, env=env)
    assert done.returncode == 2, done.stderr
    assert f"Invalid value for '{option}': holds bytes that are not valid text" in done.stderr
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert json.loads(await run_propylon("tenants", "list", env=env)) == []
