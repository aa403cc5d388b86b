from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from propylon.settings import load_settings
from propylon.settings_docs import render_configuration_docs

YAML = """
port: 9001
log_level: warning
models:
  - name: gpt-test
    aliases: [fast]
    deployments:
      - provider: openai
        base_url: http://127.0.0.1:9/v1
        api_key_env: TEST_UPSTREAM_KEY
"""


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "propylon.yaml"
    path.write_text(YAML)
    return path


def test_yaml_is_read_and_env_overrides_it(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROPYLON_PORT", "9002")
    settings = load_settings(config_file)
    assert settings.port == 9002
    assert settings.log_level == "warning"
    assert settings.models[0].deployments[0].model == "gpt-test"


def test_explicit_overrides_win_over_env(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROPYLON_PORT", "9002")
    assert load_settings(config_file, port=7000).port == 7000


def test_config_path_from_env(config_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROPYLON_CONFIG", str(config_file))
    assert load_settings().models[0].name == "gpt-test"


def test_builtin_local_models_are_served_without_any_configuration() -> None:
    models = {m.name: m.kind for m in load_settings().models}
    assert models == {
        "local/extractive": "chat",
        "local/all-MiniLM-L6-v2": "embeddings",
        "local/minilm-rerank": "rerank",
    }


def test_builtin_local_models_join_configured_ones_unless_turned_off(config_file: Path) -> None:
    names = [m.name for m in load_settings(config_file).models]
    assert names == [
        "gpt-test",
        "local/extractive",
        "local/all-MiniLM-L6-v2",
        "local/minilm-rerank",
    ]
    assert [m.name for m in load_settings(config_file, local_models=False).models] == ["gpt-test"]


def test_a_configured_model_replaces_its_builtin_namesake() -> None:
    mine = {"name": "local/extractive", "deployments": [{"provider": "openai"}]}
    models = load_settings(None, models=[mine]).models
    assert [(m.name, m.deployments[0].provider) for m in models] == [
        ("local/extractive", "openai"),
        ("local/all-MiniLM-L6-v2", "local"),
        ("local/minilm-rerank", "local"),
    ]


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_settings(tmp_path / "absent.yaml")


def test_database_url_is_read_from_the_conventional_variable_and_kept_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:hunter2@db/propylon")
    settings = load_settings()
    assert settings.database_url is not None
    assert settings.database_url.get_secret_value().endswith("@db/propylon")
    assert "hunter2" not in repr(settings)
    assert not settings.embedded_database


def test_api_keys_come_from_the_named_environment_variable(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TEST_UPSTREAM_KEY", "sk-secret")
    key = load_settings(config_file).models[0].deployments[0].api_key()
    assert key is not None
    assert key.get_secret_value() == "sk-secret"


def test_a_deployment_s_old_total_timeout_still_sets_its_response_timeout() -> None:
    old = {"name": "m", "deployments": [{"provider": "openai", "total_timeout": 42}]}
    [deployment] = load_settings(None, models=[old]).models[0].deployments
    assert deployment.response_timeout == 42


def test_unknown_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("prot: 1\n")
    with pytest.raises(ValidationError, match="prot"):
        load_settings(path)


def test_configuration_docs_are_current() -> None:
    committed = Path(__file__).parents[2] / "docs" / "configuration.md"
    assert committed.read_text(encoding="utf-8") == render_configuration_docs(), (
        "docs/configuration.md is stale: run `make docs`"
    )


def test_sections_nested_in_sections_are_documented_too() -> None:
    """`rag.sources` (url_hosts, folder_roots…) was "see below" with nothing below."""
    docs = render_configuration_docs()
    assert "## `rag.sources`" in docs and "| `url_hosts` |" in docs
    assert "| `folder_roots` |" in docs
