"""What the command line says when its input is wrong: one line on stderr, exit status 2,
never a traceback. ``settings`` is the CLI's one loader of the configuration; it names the
file and the field at fault."""

from __future__ import annotations

from pathlib import Path
from typing import Any, NoReturn

import typer
import yaml
from pydantic import ValidationError

from propylon.settings import Settings, load_settings


def refuse(message: str) -> NoReturn:
    """End the command with ``error: message`` (exit status 2, as click's usage errors)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def settings(config: Path | None, **overrides: Any) -> Settings:
    """The settings, or a one-line refusal: the file missing, not YAML, or a field invalid."""
    try:
        return load_settings(config, **overrides)
    except FileNotFoundError as exc:
        refuse(str(exc))
    except yaml.YAMLError as exc:
        refuse(f"{_source(config)} is not valid YAML: {_yaml_problem(exc)}")
    except ValidationError as exc:
        refuse(f"{_source(config)}: {validation_problem(exc)}")


def validation_problem(exc: ValidationError) -> str:
    """The first invalid field and why, on one line (``models: Input should be a valid list``);
    the count of any others."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    field = ".".join(str(part) for part in first["loc"]) or "(top level)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{field}: {first['msg']}{more}"


def _source(config: Path | None) -> str:
    return f"config {config}" if config is not None else "settings"


def _yaml_problem(exc: yaml.YAMLError) -> str:
    problem = getattr(exc, "problem", None) or type(exc).__name__
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} (line {mark.line + 1})" if mark is not None else str(problem)
