"""`propylon tenants …` and `propylon keys …`: the admin operations from the shell.

They act on the same database as `serve` (``--data-dir``'s embedded PostgreSQL, attached
safely while `serve` runs, or ``DATABASE_URL``), migrate it first if needed, and notify
every running `serve` of each change. Text that names something (a tenant, a key, a model) is
refused at parsing, naming its option, when the database could not store it (``_storable``).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from propylon import cli_edge
from propylon.access.amounts import MAX_AMOUNT
from propylon.access.budgets import Budget
from propylon.access.keys import KeyRecord
from propylon.access.limits import Limits
from propylon.access.store import AccessStore
from propylon.errors import InvalidRequest
from propylon.settings import Settings
from propylon.storable import unstorable_field

T = TypeVar("T")

tenants_app = typer.Typer(no_args_is_help=True, help="Tenants: create and list.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys: create, list, revoke, usage.")


def _storable(value: T) -> T:
    """``value`` (text, or a repeated option's list) when PostgreSQL can store it. Bytes of
    argv the locale cannot decode reach Python as lone surrogates (``surrogateescape``): they
    are refused here, as an error naming the option (exit 2), not by the database as a
    traceback once half the work is done."""
    if unstorable_field(value, "") is not None:
        raise typer.BadParameter(
            "holds bytes that are not valid text in the locale's encoding, which the "
            "database cannot store; pass it as UTF-8."
        )
    return value


ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (or PROPYLON_CONFIG).", dir_okay=False),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Directory of the embedded database (PROPYLON_DATA_DIR)."),
]
RpmOpt = Annotated[
    int | None, typer.Option("--rpm", help="Requests per minute.", min=1, max=MAX_AMOUNT)
]
TpmOpt = Annotated[
    int | None, typer.Option("--tpm", help="Tokens per minute.", min=1, max=MAX_AMOUNT)
]
BudgetTokensOpt = Annotated[
    int | None,
    typer.Option("--budget-tokens", help="Tokens per budget period.", min=0, max=MAX_AMOUNT),
]
BudgetCostOpt = Annotated[
    float | None,
    typer.Option("--budget-usd", help="US dollars per budget period.", min=0, max=MAX_AMOUNT),
]
PeriodOpt = Annotated[str, typer.Option("--budget-period", help="`day` or `month` (UTC).")]
KeyRefArg = Annotated[
    str, typer.Argument(help="Key id, display prefix or name.", callback=_storable)
]
CreateDbOpt = Annotated[
    bool,
    typer.Option(
        "--create-database",
        help="Create the embedded database in --data-dir when there is none yet (otherwise "
        "refused: `propylon serve` would not be using it).",
    ),
]


def _run(
    config: Path | None,
    data_dir: Path | None,
    work: Callable[[AccessStore], Awaitable[T]],
    *,
    create_database: bool = False,
) -> T:
    return _run_with_settings(
        config, data_dir, lambda store, _: work(store), create_database=create_database
    )


def _run_with_settings(
    config: Path | None,
    data_dir: Path | None,
    work: Callable[[AccessStore, Settings], Awaitable[T]],
    *,
    create_database: bool = False,
) -> T:
    from propylon.db.connect import open_database
    from propylon.db.migrator import migrate

    settings: Settings = cli_edge.settings(config, data_dir=data_dir)
    typer.echo(f"Database: {_describe_database(settings, create=create_database)}", err=True)

    async def _go() -> T:
        async with open_database(settings) as database:
            await migrate(database)
            return await work(AccessStore(database), settings)

    return asyncio.run(_go())  # an error is one line, made by `propylon.cli.main`


def _describe_database(settings: Settings, *, create: bool) -> str:
    """Which database the command acts on; refuses a new embedded one unless ``create``:
    run from the wrong directory, a command would otherwise make an empty database whose
    keys no running server knows."""
    if settings.database_url is not None:
        from propylon.db.connect import place

        where = place(settings.database_url.get_secret_value())
        return f"DATABASE_URL ({where or 'not a PostgreSQL URL'})"
    pgdata = (settings.data_dir / "pg").resolve()
    if not pgdata.is_dir() and not create:
        typer.echo(
            f"error: no database in {pgdata.parent}: `propylon serve` keeps its embedded "
            "database in --data-dir (default ./.propylon, from the directory it was started "
            "in). Run this command there, pass --data-dir or set DATABASE_URL; "
            "--create-database makes a new, empty one.",
            err=True,
        )
        raise typer.Exit(2)
    return f"embedded PostgreSQL in {pgdata}"


def _echo(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _budget(period: str, tokens: int | None, cost: float | None) -> Budget:
    try:
        return Budget.parse({"period": period, "tokens": tokens, "cost_usd": cost})
    except InvalidRequest as exc:
        raise typer.BadParameter(exc.message) from None


@tenants_app.command("create")
def tenants_create(
    name: Annotated[str, typer.Argument(help="Tenant name.", callback=_storable)],
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    budget_tokens: BudgetTokensOpt = None,
    budget_usd: BudgetCostOpt = None,
    budget_period: PeriodOpt = "month",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    create_database: CreateDbOpt = False,
) -> None:
    """Create a tenant with optional limits and budget."""
    budget = _budget(budget_period, budget_tokens, budget_usd)
    _echo(
        _run(
            config,
            data_dir,
            lambda s: s.create_tenant(name, Limits(rpm, tpm), budget),
            create_database=create_database,
        )
    )


@tenants_app.command("list")
def tenants_list(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """List tenants with their active key count."""
    _echo(_run(config, data_dir, lambda s: s.list_tenants()))


@keys_app.command("create")
def keys_create(
    tenant: Annotated[
        str,
        typer.Option("--tenant", help="Tenant name (created if missing).", callback=_storable),
    ],
    name: Annotated[
        str, typer.Option("--name", help="A label for the key.", callback=_storable)
    ] = "",
    model: Annotated[
        list[str] | None,
        typer.Option("--model", help="Allowed model (repeat); default: all.", callback=_storable),
    ] = None,
    feature: Annotated[
        list[str] | None,
        typer.Option(
            "--feature",
            help="Repeat. Model use: chat, embeddings, rag (the default set). logs:read: "
            "prompts and answers in /v1/logs. admin: administer this key's own tenant. "
            "operator: administer every tenant (like PROPYLON_ADMIN_KEY).",
            callback=_storable,
        ),
    ] = None,
    rpm: RpmOpt = None,
    tpm: TpmOpt = None,
    budget_tokens: BudgetTokensOpt = None,
    budget_usd: BudgetCostOpt = None,
    budget_period: PeriodOpt = "month",
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    create_database: CreateDbOpt = False,
) -> None:
    """Create a key and print it. It is shown this once: only its hash is stored."""
    budget = _budget(budget_period, budget_tokens, budget_usd)
    key, record = _run(
        config,
        data_dir,
        lambda s: s.create_key(
            tenant,
            name=name,
            models=model,
            features=feature,
            limits=Limits(rpm, tpm),
            budget=budget,
        ),
        create_database=create_database,
    )
    typer.echo(
        f"Created key {record.prefix}… (id {record.id}) for tenant {record.tenant_name!r}.",
        err=True,
    )
    typer.echo("Store it now; it cannot be shown again:", err=True)
    typer.echo(key)


@keys_app.command("list")
def keys_list(
    tenant: Annotated[
        str | None, typer.Option("--tenant", help="Only this tenant.", callback=_storable)
    ] = None,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """List keys (prefixes, scopes, limits; never the keys)."""
    records = _run(config, data_dir, lambda s: s.keys(tenant_name=tenant))
    _echo([r.describe() for r in records])


@keys_app.command("revoke")
def keys_revoke(
    ref: KeyRefArg,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Revoke a key; running servers refuse it at once and its queued runs are cancelled."""

    async def revoke(store: AccessStore, settings: Settings) -> KeyRecord:
        from propylon.app import open_key_revocation

        async with open_key_revocation(settings, store) as revocation:
            return await revocation.revoke(ref)

    _echo(_run_with_settings(config, data_dir, revoke).describe())


@keys_app.command("usage")
def keys_usage(
    ref: KeyRefArg,
    days: Annotated[int, typer.Option(help="Days shown, latest first.", min=1)] = 31,
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
) -> None:
    """Requests, tokens and cost of a key per UTC day."""
    _echo(_run(config, data_dir, lambda s: s.usage(ref, days)))


@keys_app.command("rotate-secret")
def keys_rotate_secret(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Make a new key secret (the HMAC under which new keys' check characters are made, so
    forged keys are refused without a lookup). Every existing key keeps working."""
    generation = _run(config, data_dir, lambda s: s.rotate_key_secret())
    _echo({"generation": generation})
