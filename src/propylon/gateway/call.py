"""What happened on one gateway call, filled in as the call proceeds.

The HTTP layer creates one per request and renders it as response headers; observability
records it. Inner callers (RAG, runs) may pass their own or none.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Attempt:
    deployment: str
    outcome: str  # "ok", "skipped" (breaker open), or the error code that ended the attempt
    duration_ms: float


@dataclass(slots=True)
class CallInfo:
    """The route a request took, and what it cost."""

    started: float = field(default_factory=time.perf_counter)
    requested_model: str | None = None
    deployment: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    usage: dict[str, Any] | None = None
    first_token_at: float | None = None

    def record_attempt(self, deployment: str, outcome: str, started: float) -> None:
        self.attempts.append(Attempt(deployment, outcome, (time.perf_counter() - started) * 1000.0))

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
        return out
