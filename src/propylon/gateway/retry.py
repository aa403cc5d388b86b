"""When to try the same deployment again, and how long to wait first."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from propylon.errors import PropylonError, UpstreamTimeout


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter, honouring ``Retry-After``.

    ``attempts`` counts calls to one deployment, the first included. A ``Retry-After`` longer
    than ``max_retry_after_s`` is not waited for: the gateway falls back to the next deployment
    instead, and the client gets the hint if every deployment fails.

    A timeout after the request was sent (the upstream may have done, and billed, the work)
    follows ``timeouts``: ``retry`` like any failure, ``fallback`` to the next deployment
    only, or ``fail`` at once.
    """

    attempts: int = 2
    base_delay_s: float = 0.05
    max_delay_s: float = 2.0
    max_retry_after_s: float = 5.0
    timeouts: Literal["retry", "fallback", "fail"] = "fallback"
    random: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, attempt: int, error: PropylonError) -> float | None:
        """Seconds to wait before attempt ``attempt + 1`` on the same deployment, or None
        when the next step should be fallback (or giving up)."""
        if not error.retryable or attempt + 1 >= self.attempts:
            return None
        if _work_may_be_done(error) and self.timeouts != "retry":
            return None
        if error.retry_after is not None:
            if error.retry_after > self.max_retry_after_s:
                return None
            return error.retry_after
        ceiling: float = min(self.max_delay_s, self.base_delay_s * 2.0**attempt)
        return ceiling * self.random()

    def falls_back(self, error: PropylonError) -> bool:
        """Whether a retryable ``error`` may be tried on the next deployment."""
        return not (_work_may_be_done(error) and self.timeouts == "fail")


def _work_may_be_done(error: PropylonError) -> bool:
    return isinstance(error, UpstreamTimeout) and error.after_send
