"""API keys: how they are made, hashed and told apart from strings that cannot be keys.

A key is ``ppl_`` + 40 random URL-safe characters (240 bits) + a 6-character check. Only the
SHA-256 of the whole key is stored, with its first 12 characters for display. ``looks_like_key``
turns away strings without a key's shape. The check is an HMAC of the body under the server's
key secret (``key_secrets``, made at first start, rotatable), so only this server can make a
key that passes ``has_valid_check``: a forged key is refused without a database lookup. Keys
made before the secret existed carry an unkeyed check; they are known to every replica's
directory (loaded in full at start), so they never need the lookup.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from propylon.access.budgets import Budget
from propylon.access.limits import Limits
from propylon.principal import FEATURES, Principal

KEY_PREFIX = "ppl_"
_BODY_LEN = 40
_CHECK_LEN = 6
KEY_LENGTH = len(KEY_PREFIX) + _BODY_LEN + _CHECK_LEN
DISPLAY_LENGTH = 12


def _check(body: str, secret: bytes) -> str:
    return hmac.new(secret, body.encode(), hashlib.sha256).hexdigest()[:_CHECK_LEN]


def new_secret() -> bytes:
    """A new key secret (32 random bytes)."""
    return secrets.token_bytes(32)


def generate_key(secret: bytes) -> str:
    """A new random key checked under ``secret``. Show it once; store ``hash_key(key)`` and
    ``display_prefix(key)``."""
    body = secrets.token_urlsafe(30)
    return KEY_PREFIX + body + _check(body, secret)


def looks_like_key(candidate: str) -> bool:
    """True when ``candidate`` has a key's length and prefix (it may still be forged)."""
    return len(candidate) == KEY_LENGTH and candidate.startswith(KEY_PREFIX)


def has_valid_check(candidate: str, secret: bytes) -> bool:
    """True when ``candidate``'s check characters are its HMAC under ``secret``: only this
    server can have made it (it may still be unknown or revoked)."""
    body = candidate[len(KEY_PREFIX) : len(KEY_PREFIX) + _BODY_LEN]
    return looks_like_key(candidate) and hmac.compare_digest(
        candidate[-_CHECK_LEN:], _check(body, secret)
    )


def hash_key(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def display_prefix(key: str) -> str:
    return key[:DISPLAY_LENGTH]


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """One stored key with its tenant's policy: everything a request needs, no secret."""

    id: str
    tenant_id: str
    tenant_name: str
    name: str
    prefix: str
    key_hash: bytes
    models: frozenset[str] | None
    features: frozenset[str]
    limits: Limits
    budget: Budget
    tenant_limits: Limits
    tenant_budget: Budget
    created_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> KeyRecord:
        return cls(
            id=str(row["id"]),
            tenant_id=str(row["tenant_id"]),
            tenant_name=row["tenant_name"],
            name=row["name"],
            prefix=row["prefix"],
            key_hash=bytes(row["key_hash"]),
            models=None if row["models"] is None else frozenset(row["models"]),
            features=frozenset(row["features"]),
            limits=Limits.stored(row["limits"]),
            budget=Budget.stored(row["budget"]),
            tenant_limits=Limits.stored(row["tenant_limits"]),
            tenant_budget=Budget.stored(row["tenant_budget"]),
            created_at=row.get("created_at"),
            revoked_at=row.get("revoked_at"),
        )

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def principal(self) -> Principal:
        return Principal(
            tenant_id=self.tenant_id,
            tenant_name=self.tenant_name,
            key_id=self.id,
            key_prefix=self.prefix,
            features=self.features & FEATURES,
            models=self.models,
            is_operator="operator" in self.features,
        )

    def describe(self) -> dict[str, Any]:
        """The key as the admin API and CLI show it (never the key itself)."""
        return {
            "id": self.id,
            "tenant": self.tenant_name,
            "tenant_id": self.tenant_id,
            "name": self.name,
            "prefix": self.prefix,
            "models": None if self.models is None else sorted(self.models),
            "features": sorted(self.features),
            "limits": self.limits.to_json(),
            "budget": self.budget.to_json(),
            "created_at": None if self.created_at is None else self.created_at.isoformat(),
            "revoked_at": None if self.revoked_at is None else self.revoked_at.isoformat(),
        }
