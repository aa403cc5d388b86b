"""`propylon`: the one command-line entry point. Sync at this edge, async inside."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from propylon import __version__
from propylon.settings import Settings, load_settings

app = typer.Typer(no_args_is_help=True, add_completion=False, help=__doc__)

ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML config file (or PROPYLON_CONFIG).", dir_okay=False),
]
DataDirOpt = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Directory for the embedded database (PROPYLON_DATA_DIR)."),
]


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except FileNotFoundError as exc:
        raise typer.BadParameter(str(exc)) from None


@app.command()
def serve(
    config: ConfigOpt = None,
    data_dir: DataDirOpt = None,
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port.")] = None,
) -> None:
    """Serve the HTTP API (OpenAI-compatible gateway and the rest)."""
    import uvicorn

    from propylon.app import create_app
    from propylon.observe.logging import configure_logging

    settings = _settings(config, data_dir=data_dir, host=host, port=port)
    configure_logging(settings.log_level)
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings),
            host=settings.host,
            port=settings.port,
            loop="uvloop",
            http="httptools",
            access_log=False,
            log_config=None,
            timeout_graceful_shutdown=10,
        )
    )
    server.run()


@app.command()
def worker(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Run background jobs until SIGTERM."""
    from propylon.jobs.worker import run_worker
    from propylon.observe.logging import configure_logging

    settings = _settings(config, data_dir=data_dir)
    configure_logging(settings.log_level)
    asyncio.run(run_worker(settings))


@app.command()
def migrate(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
    """Apply pending database migrations."""
    from propylon.db.connect import open_database
    from propylon.db.migrator import migrate as apply

    settings = _settings(config, data_dir=data_dir)

    async def _run() -> list[str]:
        async with open_database(settings) as database:
            return [f"{m.version:04d}_{m.name}" for m in await apply(database)]

    applied = asyncio.run(_run())
    typer.echo("applied: " + ", ".join(applied) if applied else "database is up to date")


@app.command("fake-upstream")
def fake_upstream(
    host: Annotated[str, typer.Option(help="Bind address.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Bind port.")] = 8089,
    latency_ms: Annotated[float, typer.Option(help="Delay before response headers.")] = 0.0,
    ttft_ms: Annotated[float, typer.Option(help="Delay before the first streamed token.")] = 0.0,
    tokens_per_second: Annotated[float, typer.Option(help="Streaming pace; 0 = at once.")] = 0.0,
    completion_tokens: Annotated[int, typer.Option(help="Answer length in tokens.")] = 16,
    behaviour: Annotated[
        str | None,
        typer.Option(help="Full behaviour as JSON (faults included); overrides the flags."),
    ] = None,
) -> None:
    """Serve the fake OpenAI/Anthropic upstream used by tests and benchmarks."""
    from propylon.testing import Behaviour, run_fake_upstream

    chosen = (
        Behaviour.from_json(behaviour)
        if behaviour
        else Behaviour(
            latency_ms=latency_ms,
            ttft_ms=ttft_ms,
            tokens_per_second=tokens_per_second,
            completion_tokens=completion_tokens,
        )
    )
    run_fake_upstream(host, port, chosen)


@app.command()
def version() -> None:
    """Print Propylon's version."""
    typer.echo(__version__)


@app.command("config-docs")
def config_docs(
    output: Annotated[Path | None, typer.Option(help="Write here instead of stdout.")] = None,
) -> None:
    """Print the configuration reference generated from the settings' field descriptions."""
    from propylon.settings_docs import render_configuration_docs

    text = render_configuration_docs()
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")


def main() -> None:
    app()
