"""Counters of what the cache did, read by the metrics exporter and the admin API."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# The closed sets of keys each counter below can have: every one is there from the start, at
# 0, so ``/metrics`` shows a series before its first count (an alert on a rate needs it).
ERROR_SOURCES = ("database", "embedder", "redis", "timeout")
SKIP_REASONS = ("unstorable_answer", "unstorable_question")
FIRST_STAGE_OUTCOMES = ("decided", "deferred")


def _zeros(keys: tuple[str, ...]) -> Counter[str]:
    return Counter(dict.fromkeys(keys, 0))


@dataclass(slots=True)
class CacheStats:
    """Monotonic counters since start. ``errors`` is keyed by source: ``redis``, ``database``,
    ``embedder``, ``timeout``; every error was served as a miss."""

    hits_exact: int = 0
    hits_semantic: int = 0
    misses: int = 0
    bypasses: int = 0
    stores: int = 0
    rejected: int = 0  # semantic candidates refused by the second check
    dropped: int = 0  # semantic entries and lookup records dropped: database away, queue full
    verified: int = 0  # would-be semantic hits answered by the upstream and compared
    verified_wrong: int = 0  # of those, the answers that disagreed
    # misses served the answer of the same request in flight (recorded as `hit-exact`)
    coalesced: int = 0
    errors: Counter[str] = field(default_factory=lambda: _zeros(ERROR_SOURCES))
    # semantic entries not stored, by reason: ``unstorable_question`` / ``unstorable_answer``
    # (a NUL PostgreSQL cannot keep as served; the exact cache still holds them)
    skipped: Counter[str] = field(default_factory=lambda: _zeros(SKIP_REASONS))
    # semantic lookups behind the first stage: ``decided`` by static vectors alone (no
    # embedder call), ``deferred`` to the embedder (a static vector passed the loose threshold)
    first_stage: Counter[str] = field(default_factory=lambda: _zeros(FIRST_STAGE_OUTCOMES))

    def snapshot(self) -> dict[str, object]:
        return {
            "hits_exact": self.hits_exact,
            "hits_semantic": self.hits_semantic,
            "misses": self.misses,
            "bypasses": self.bypasses,
            "stores": self.stores,
            "rejected": self.rejected,
            "dropped": self.dropped,
            "verified": self.verified,
            "verified_wrong": self.verified_wrong,
            "coalesced": self.coalesced,
            "observed_wrong_rate": self.verified_wrong / self.verified if self.verified else None,
            "errors": dict(self.errors),
            "skipped": dict(self.skipped),
            "first_stage": dict(self.first_stage),
        }
