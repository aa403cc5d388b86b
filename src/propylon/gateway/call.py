"""What happened on one gateway call: the facts the layers report as the call proceeds.

The HTTP layer creates one per request and renders it as response headers; each layer of the
request path reports what it did (the gateway: the route and the usage, ``record_usage``; the
cache: ``served_from_cache``; the guard: its verdicts; the limits: their headers). What the call
spent is not a fact any layer writes: once the call has ended, ``access.spend.spend_of``
computes it once from these facts into the frozen ``spend`` that the limiter, the usage tally,
the request log, the metrics and ``/v1/stats`` all read. Inner callers (RAG, runs) may pass
their own or none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from propylon.principal import Principal

if TYPE_CHECKING:
    from propylon.access.spend import Spend


@dataclass(slots=True)
class Attempt:
    deployment: str
    outcome: str  # "ok", "skipped" (breaker open), or the error code that ended the attempt
    duration_ms: float


@dataclass(slots=True)
class CallInfo:
    """The route a request took, and what it cost."""

    principal: Principal | None = None
    request_id: str | None = None
    endpoint: str = "chat"  # "chat" | "embeddings" | "rag"
    # The wire API the client spoke: "chat" | "responses" | "messages" | "completions" (the
    # gateway then calls deployments in the legacy completions API).
    api: str = "chat"
    metadata: dict[str, Any] | None = None
    cache_control: str | None = None  # the request's Cache-Control header (no-cache, no-store)
    started: float = field(default_factory=time.perf_counter)
    requested_model: str | None = None
    model: str | None = None  # the public model that answered: aliases resolved (for prices)
    deployment: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    first_token_at: float | None = None
    upstream_ms: float = 0.0  # time spent waiting on upstreams (for gateway overhead)
    # "hit-exact" | "hit-semantic" | "miss" | "bypass" | "verify-agree" | "verify-wrong"
    cache_status: str | None = None
    cache_similarity: float | None = None
    guard: dict[str, Any] = field(default_factory=dict)
    response_headers: dict[str, str] = field(default_factory=dict)
    # "user": a client's request; "internal": a call Propylon makes for itself (ingestion
    # embeddings, RAG's inner model calls), recorded apart with the request or job it served.
    origin: str = "user"
    parent_id: str | None = None
    usage_estimated: bool = False  # the upstream gave no usage: tokens counted by us
    spend: Spend | None = None  # set once, when the call has ended (``access.spend.spend_of``)

    @property
    def cache_hit(self) -> bool:
        """Served from the response cache: no upstream was called or paid."""
        return self.cache_status is not None and self.cache_status.startswith("hit")

    def record_usage(self, usage: dict[str, Any] | None, *, estimated: bool = False) -> None:
        """The answer's OpenAI ``usage``: the upstream's, or ours when ``estimated``."""
        self.usage = usage
        self.usage_estimated = estimated

    def served_from_cache(self, status: str, usage: Any, similarity: float | None = None) -> None:
        """The cache answered (``status``: ``hit-exact`` / ``hit-semantic``): no upstream was
        paid; ``usage`` is the cached answer's, kept to price what the hit saved."""
        self.cache_status = status
        self.cache_similarity = similarity
        self.usage = usage if isinstance(usage, dict) else None
        self.usage_estimated = False

    def record_attempt(self, deployment: str, outcome: str, started: float) -> None:
        elapsed = (time.perf_counter() - started) * 1000.0
        self.upstream_ms += elapsed
        self.attempts.append(Attempt(deployment, outcome, elapsed))

    def record_skip(self, deployment: str) -> None:
        self.attempts.append(Attempt(deployment, "skipped", 0.0))

    @property
    def calls(self) -> int:
        """Upstream calls made (skipped deployments excluded)."""
        return sum(1 for a in self.attempts if a.outcome != "skipped")

    def headers(self) -> dict[str, str]:
        """Response headers that tell the client the path its request took."""
        out = {"x-propylon-attempts": str(self.calls)}
        if self.attempts:
            out["x-propylon-route"] = ", ".join(
                f"{a.deployment}={a.outcome}" for a in self.attempts
            )
        if self.deployment is not None:
            out["x-propylon-deployment"] = self.deployment
        if self.cache_status is not None:
            out["x-propylon-cache"] = self.cache_status
        if self.cache_similarity is not None:
            out["x-propylon-cache-similarity"] = f"{self.cache_similarity:.4f}"
        out.update(self.response_headers)
        return out
