"""Who is calling: the tenant and API key a request was authenticated as.

The features of a key, and what each opens (docs/operations.md, "Security model"):

* ``chat``, ``embeddings``, ``rag``: the model routes, and collections, search and runs;
* ``tools:network``: tools that reach beyond Propylon (``http_get``) for agent runs;
* ``logs:read``: prompts and answers in ``/v1/logs`` (without it, rows come without content);
* ``admin``: the admin API for the key's own tenant (its keys, their usage, its cache);
* ``operator``: the admin API for every tenant, and every tenant's logs and stats. The
  configured ``PROPYLON_ADMIN_KEY`` is an operator too.
"""

from __future__ import annotations

from dataclasses import dataclass

from propylon.errors import PermissionDenied

FEATURES = frozenset(
    {"chat", "embeddings", "rag", "tools:network", "logs:read", "admin", "operator"}
)
TENANT_FEATURES = FEATURES - {"operator"}  # what a tenant admin may grant


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
    is_operator: bool = False

    def can_use_model(self, model: str) -> bool:
        return self.models is None or model in self.models

    def has_feature(self, feature: str) -> bool:
        return self.is_operator or feature in self.features

    def administers(self, tenant_id: str) -> bool:
        """May this caller administer ``tenant_id`` (its keys, usage and cache)?"""
        return self.is_operator or ("admin" in self.features and tenant_id == self.tenant_id)

    def reading_tenant(self, requested: str | None) -> str | None:
        """The tenant whose records this caller reads when it asks for ``requested`` (a
        ``tenant_id`` parameter): an operator's choice (None: every tenant); for anyone else
        its own tenant, and asking for another one is refused rather than ignored (it would
        read as another tenant's figures)."""
        if self.is_operator:
            return requested
        if requested is not None and requested != self.tenant_id:
            raise PermissionDenied(
                "Only an operator key may read another tenant's records.", param="tenant_id"
            )
        return self.tenant_id

    @classmethod
    def acting_for(cls, tenant_id: str | None, key_id: str | None = None) -> Principal | None:
        """Whom work Propylon does for itself is done for (a job's embeddings, its guard
        screening): the tenant, and the key that asked when known; None without a tenant."""
        return cls(tenant_id=tenant_id, tenant_name="", key_id=key_id) if tenant_id else None
