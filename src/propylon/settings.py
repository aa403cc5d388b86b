"""The one place configuration is read.

Sources, highest priority first: explicit overrides (CLI flags), ``PROPYLON_*`` environment
variables (plus the conventional ``DATABASE_URL`` and ``REDIS_URL``), the YAML file named by
``--config`` / ``PROPYLON_CONFIG``, then the defaults below. ``load_settings`` builds the
object once at start; everything else receives it (or the part it needs) as an argument.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)


class DeploymentConfig(BaseModel):
    """One concrete upstream that can serve a public model."""

    model_config = {"extra": "forbid"}

    provider: str = Field(
        description="Provider type: a key of the provider table (`openai`, `anthropic`, `local`)."
    )
    base_url: str | None = Field(
        default=None,
        description="Root URL of the upstream API, e.g. `https://api.openai.com/v1`.",
    )
    model: str | None = Field(
        default=None,
        description="Model name sent upstream; defaults to the public model name.",
    )
    api_key_env: str | None = Field(
        default=None,
        description="Name of the environment variable that holds this upstream's API key.",
    )
    api_version: str | None = Field(
        default=None,
        description="Azure OpenAI `api-version` query parameter (Azure deployments only).",
    )
    name: str | None = Field(
        default=None,
        description="Display name of the deployment in headers and logs; defaults to "
        "`provider/model`.",
    )
    weight: float = Field(default=1.0, gt=0, description="Share of traffic under `weighted`.")
    connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to connect.")
    first_token_timeout: float = Field(
        default=30.0, gt=0, description="Seconds until response headers / the first token."
    )
    total_timeout: float = Field(default=600.0, gt=0, description="Seconds for the whole call.")

    @property
    def display_name(self) -> str:
        return self.name or f"{self.provider}/{self.model or '?'}"

    def api_key(self) -> SecretStr | None:
        """The key, read from the environment variable named in the config."""
        if not self.api_key_env:
            return None
        value = os.environ.get(self.api_key_env)
        return SecretStr(value) if value else None


class ModelConfig(BaseModel):
    """A public model name and the deployments that can serve it."""

    model_config = {"extra": "forbid"}

    name: str = Field(description="Public model name clients send in `model`.")
    deployments: list[DeploymentConfig] = Field(
        min_length=1, description="Upstreams able to serve this model, in fallback order."
    )
    strategy: Literal["fallback", "weighted"] = Field(
        default="fallback",
        description="`fallback`: try deployments in order; `weighted`: pick by weight, then "
        "fall back to the rest.",
    )
    aliases: list[str] = Field(default_factory=list, description="Other names for this model.")
    context_window: int | None = Field(
        default=None, gt=0, description="Tokens the model accepts (prompt + completion)."
    )
    kind: Literal["chat", "embeddings"] = Field(
        default="chat", description="What the model serves."
    )

    @model_validator(mode="after")
    def _default_upstream_model(self) -> ModelConfig:
        for deployment in self.deployments:
            if deployment.model is None:
                deployment.model = self.name
        return self


class RetrySettings(BaseModel):
    """Retries on one deployment before falling back to the next."""

    model_config = {"extra": "forbid"}

    attempts: int = Field(
        default=2, ge=1, description="Calls to one deployment per request, the first included."
    )
    base_delay_s: float = Field(
        default=0.05, ge=0, description="Backoff before the 2nd call; doubles each time (jittered)."
    )
    max_delay_s: float = Field(default=2.0, ge=0, description="Cap on one backoff.")
    max_retry_after_s: float = Field(
        default=5.0,
        ge=0,
        description="Longest upstream `Retry-After` waited for; longer ones fall back at once.",
    )


class BreakerSettings(BaseModel):
    """The circuit breaker each deployment has."""

    model_config = {"extra": "forbid"}

    window_s: float = Field(default=30.0, gt=0, description="Sliding window of outcomes.")
    min_calls: int = Field(
        default=5, ge=1, description="Calls in the window before the breaker may open."
    )
    failure_ratio: float = Field(
        default=0.5, gt=0, le=1, description="Share of failed calls in the window that opens it."
    )
    cooldown_s: float = Field(
        default=15.0, gt=0, description="Seconds open before a half-open probe is let through."
    )


class Settings(BaseSettings):
    """Propylon's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="PROPYLON_",
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
    )

    host: str = Field(default="127.0.0.1", description="Address `propylon serve` binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port `propylon serve` binds.")
    data_dir: Path = Field(
        default=Path(".propylon"),
        description="Directory for the embedded PostgreSQL and other local state.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("database_url", "PROPYLON_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL (with pgvector) to use. Unset: an embedded PostgreSQL is "
        "started in `data_dir`. Also read from `DATABASE_URL`.",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("redis_url", "PROPYLON_REDIS_URL", "REDIS_URL"),
        description="Redis shared by replicas for limits and caches. Also read from `REDIS_URL`.",
    )
    db_pool_min: int = Field(default=1, ge=0, description="Minimum database connections.")
    db_pool_max: int = Field(default=10, ge=1, description="Maximum database connections.")
    migrate_on_start: bool = Field(
        default=True, description="Apply pending migrations when `serve` starts."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Minimum level of log records."
    )
    admin_key: SecretStr | None = Field(
        default=None, description="Key that authorises `/admin/` endpoints."
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, gt=0, description="Largest JSON request body accepted."
    )
    upstream_connection_limit: int = Field(
        default=1000, ge=1, description="Open connections to upstreams, across hosts."
    )
    local_threads: int = Field(
        default=1, ge=1, description="CPU threads of the local embedding model."
    )
    retry: RetrySettings = Field(
        default_factory=RetrySettings, description="Retry policy (see below)."
    )
    breaker: BreakerSettings = Field(
        default_factory=BreakerSettings, description="Circuit breaker policy (see below)."
    )
    models: list[ModelConfig] = Field(
        default_factory=list, description="Public models and their deployments (YAML)."
    )

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from overrides, the environment and the YAML file, once."""
    path = config or (Path(p) if (p := os.environ.get("PROPYLON_CONFIG")) else None)
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    clean = {k: v for k, v in overrides.items() if v is not None}

    class _FromFile(Settings):
        model_config = SettingsConfigDict(yaml_file=path)

    return _FromFile(**clean)
