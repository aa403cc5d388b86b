"""Stand-ins for the key directory and the access store of the limits layer's unit tests."""

from __future__ import annotations

from typing import Any

from propylon.access.budgets import Budget
from propylon.access.keys import KeyRecord
from propylon.access.limits import Limits
from propylon.principal import FEATURES


def key_record(limits: Limits | None = None, budget: Budget | None = None) -> KeyRecord:
    """Key `k1` of tenant `t1`, with every feature and model."""
    return KeyRecord(
        id="k1",
        tenant_id="t1",
        tenant_name="acme",
        name="ci",
        prefix="pk-test",
        key_hash=b"",
        models=None,
        features=FEATURES,
        limits=limits or Limits(),
        budget=budget or Budget(),
        tenant_limits=Limits(),
        tenant_budget=Budget(),
    )


class Directory:
    """Knows one key."""

    def __init__(self, record: KeyRecord) -> None:
        self._record = record

    def record(self, key_id: str) -> KeyRecord | None:
        return self._record if key_id == self._record.id else None


class Store:
    """Nothing written yet: a budget's floor is what the process tallied."""

    async def spend(self, record: KeyRecord, day: Any, **_: Any) -> dict[str, float]:
        return {"key_tokens": 0, "key_cost": 0.0, "tenant_tokens": 0, "tenant_cost": 0.0}
