"""The table of source types: how each one's configuration is checked, and its connector."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from propylon.rag.sources.connector import Connector, InvalidSource
from propylon.rag.sources.folder import FolderConnector, folder_config
from propylon.rag.sources.s3 import S3Connector, s3_config
from propylon.rag.sources.web import WebConnector, WebLimits, web_config
from propylon.sealed import SecretsKey


@dataclass(frozen=True, slots=True)
class SourceRules:
    """What the operator allows sources to do (``rag.sources``)."""

    folder_roots: Sequence[str]
    web: WebLimits
    min_interval_s: int
    secrets: SecretsKey | None = None  # seals stored secrets (``rag.sources.secrets_key``)

    @property
    def max_bytes(self) -> int:
        return self.web.max_bytes


@dataclass(frozen=True, slots=True)
class SourceType:
    check: Callable[[dict[str, Any], str | None, SourceRules], dict[str, Any]]
    """The configuration to store (normalised); ``InvalidSource`` when refused."""
    open: Callable[[dict[str, Any], str | None, SourceRules], Connector]
    """A connector for a stored configuration and its secret."""
    secret: bool = False
    """Whether it takes a secret (``secret_access_key``), sealed when stored."""


def _folder_check(config: dict[str, Any], secret: str | None, rules: SourceRules) -> dict[str, Any]:
    if not rules.folder_roots:
        raise InvalidSource(
            "Folder sources are off: an operator allows them by listing directories in "
            "`rag.sources.folder_roots`.",
            param="type",
        )
    return folder_config(config, rules.folder_roots)


TYPES: dict[str, SourceType] = {
    "url": SourceType(
        check=lambda config, secret, rules: web_config(config, rules.web),
        open=lambda config, secret, rules: WebConnector(config, rules.web),
    ),
    "folder": SourceType(
        check=_folder_check,
        open=lambda config, secret, rules: FolderConnector(
            config, roots=rules.folder_roots, max_bytes=rules.max_bytes
        ),
    ),
    "s3": SourceType(
        check=lambda config, secret, rules: s3_config(config, secret),
        open=lambda config, secret, rules: S3Connector(config, secret, rules.web),
        secret=True,
    ),
}


def source_type(name: object) -> SourceType:
    if not isinstance(name, str) or name not in TYPES:
        raise InvalidSource(f"`type` must be one of {', '.join(TYPES)}.", param="type")
    return TYPES[name]
