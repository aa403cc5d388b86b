"""``KeyRevocation``: the one way a key is revoked, by the admin API and by
``propylon keys revoke`` alike.

Revoking commits the revocation and announces it (every running server refuses the key at
once, see ``AccessStore.revoke``), then cancels the key's runs that no worker is running (queued
ones, and those waiting for an approval that another key could still give), so none of them
calls a model on the revoked key's behalf. A worker that reaches a run of a
revoked key anyway (one claimed in between) refuses it: that check stays as the second line.
"""

from __future__ import annotations

import logging
from typing import Protocol

from propylon.access.keys import KeyRecord
from propylon.access.store import AccessStore

log = logging.getLogger(__name__)


class PendingRuns(Protocol):
    """What revocation needs of the runs: cancel a key's runs that no worker is running
    (queued, or waiting for an approval), saying why; how many."""

    async def cancel_pending_of_key(self, tenant_id: str, key_id: str, reason: str) -> int: ...


class KeyRevocation:
    """Revokes a key, then cancels its pending runs (queued or waiting for an approval)."""

    def __init__(self, store: AccessStore, runs: PendingRuns) -> None:
        self._store = store
        self._runs = runs

    async def revoke(self, ref: str, tenant_id: str | None = None) -> KeyRecord:
        """Revoke the key ``ref`` (id, display prefix or name; within ``tenant_id`` when
        given) and cancel its pending runs. The revocation stands even if cancelling fails:
        workers refuse the revoked key's runs."""
        record = await self._store.revoke(ref, tenant_id)
        reason = f"The API key {record.prefix}… was revoked; the run was cancelled."
        try:
            cancelled = await self._runs.cancel_pending_of_key(record.tenant_id, record.id, reason)
        except Exception:
            log.exception("could not cancel the pending runs of revoked key %s…", record.prefix)
        else:
            if cancelled:
                log.info("revoked key %s…: %d pending run(s) cancelled", record.prefix, cancelled)
        return record
