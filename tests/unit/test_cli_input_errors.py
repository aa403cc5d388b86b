"""Wrong input to the command line is refused with one line naming what is wrong (the file,
the field, the option) and exit status 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from propylon.cli import app


def refusal(args: list[str]) -> str:
    """The one line ``propylon args`` printed, asserting it refused without a traceback."""
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture
def configs(tmp_path: Path) -> Path:
    (tmp_path / "bad.yaml").write_text("models: [1,2\n")
    (tmp_path / "invalid.yaml").write_text("models: 5\n")
    return tmp_path


@pytest.mark.parametrize("command", [["migrate"], ["worker"], ["keys", "list"]])
def test_a_config_that_is_not_yaml_is_refused_naming_the_file(
    configs: Path, command: list[str]
) -> None:
    line = refusal([*command, "--config", str(configs / "bad.yaml")])
    assert "bad.yaml" in line and "not valid YAML" in line and "line" in line


@pytest.mark.parametrize("command", [["migrate"], ["keys", "list"]])
def test_a_config_with_an_invalid_field_is_refused_naming_the_file_and_the_field(
    configs: Path, command: list[str]
) -> None:
    line = refusal([*command, "--config", str(configs / "invalid.yaml")])
    assert "invalid.yaml" in line and "models:" in line


def test_a_port_out_of_range_is_refused_naming_the_field() -> None:
    assert "port:" in refusal(["serve", "--port", "99999"])


def test_an_empty_collection_name_is_refused(tmp_path: Path) -> None:
    assert "--collection" in refusal(["ingest", str(tmp_path), "--collection", ""])


def test_a_server_url_that_is_not_a_url_is_refused(tmp_path: Path) -> None:
    args = ["ingest", str(tmp_path), "--collection", "docs", "--url", "notaurl"]
    assert "--url" in refusal(args)


@pytest.mark.parametrize(
    "command",
    [
        ["eval", "guard"],
        ["eval", "guard-first-stage"],
        ["guard", "train"],
        ["guard", "train-first-stage"],
    ],
)
def test_a_missing_datasets_directory_is_refused(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "nowhere"
    line = refusal([*command, "--data", str(missing)])
    assert str(missing) in line and "--data" in line


def test_a_fake_upstream_behaviour_that_is_not_json_is_refused() -> None:
    assert "--behaviour" in refusal(["fake-upstream", "--behaviour", "{bad"])
