"""Who is calling: the tenant and API key a request was authenticated as."""

from __future__ import annotations

from dataclasses import dataclass

FEATURES = frozenset({"chat", "embeddings", "rag", "admin"})


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller. Every tenant-owned resource is looked up with ``tenant_id``.

    ``models`` is the set of public model names the key may use (``None``: any model);
    ``features`` is a subset of ``FEATURES``.
    """

    tenant_id: str
    tenant_name: str
    key_id: str | None = None
    key_prefix: str | None = None
    features: frozenset[str] = FEATURES
    models: frozenset[str] | None = None
    is_admin: bool = False

    def can_use_model(self, model: str) -> bool:
        return self.models is None or model in self.models

    def has_feature(self, feature: str) -> bool:
        return self.is_admin or feature in self.features
