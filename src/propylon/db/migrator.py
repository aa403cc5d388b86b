"""Numbered ``.sql`` migrations, applied once each, in order, under an advisory lock.

Files are named ``NNNN_description.sql`` in ``propylon/db/migrations``. The pending ones run
in one transaction together with the rows that record them, so a failed migration leaves
nothing half applied (nor the pending ones before it: the next start applies them again). One
commit, not one per file: on a new database that halves the time (0.46 -> 0.25-0.32 s for 21
files, load 7 on 2 cores). The advisory lock lets several processes start against one
database at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from psycopg import AsyncConnection, sql

from propylon.db.database import Database

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_LOCK_ID = 0x70726F70  # "prop"


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def bundled_migrations() -> list[Migration]:
    """The migrations shipped in the package, in version order."""
    found: list[Migration] = []
    for entry in resources.files("propylon.db").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration versions: {versions}")
    return found


async def migrate(db: Database, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply pending migrations; return the ones applied now."""
    pending = bundled_migrations() if migrations is None else migrations
    applied: list[Migration] = []
    async with db.connection() as conn:
        await conn.set_autocommit(True)
        try:
            await conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_ID,))
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = await _applied_versions(conn)
            todo = [migration for migration in pending if migration.version not in done]
            if todo:
                async with conn.transaction():
                    for migration in todo:
                        try:
                            await conn.execute(sql.SQL(migration.sql))
                        except Exception as exc:
                            exc.add_note(f"in migration {migration.version:04d}_{migration.name}")
                            raise
                    await conn.execute(
                        "INSERT INTO schema_migrations (version, name)"
                        " SELECT * FROM unnest(%s::integer[], %s::text[])",
                        ([m.version for m in todo], [m.name for m in todo]),
                    )
                applied = todo
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_ID,))
            await conn.set_autocommit(False)
    return applied


async def _applied_versions(conn: AsyncConnection[dict[str, object]]) -> set[int]:
    cur = await conn.execute("SELECT version FROM schema_migrations")
    return {int(str(row["version"])) for row in await cur.fetchall()}
