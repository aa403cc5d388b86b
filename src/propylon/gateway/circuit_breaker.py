"""A circuit breaker per deployment, so a dead provider is skipped without a network call.

closed ──(failure ratio ≥ threshold over the window, with enough calls)──▶ open
open ──(cooldown elapsed)──▶ half-open: one probe call is let through
half-open ──probe succeeds──▶ closed        half-open ──probe fails──▶ open again
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from enum import StrEnum

Clock = Callable[[], float]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Counts outcomes in a sliding time window; opens when too many fail.

    Only failures that say something about the provider (5xx, timeouts, resets, 429) should be
    recorded as failures; a request the provider rejected as malformed is the caller's fault.
    """

    def __init__(
        self,
        *,
        window_s: float = 30.0,
        min_calls: int = 5,
        failure_ratio: float = 0.5,
        cooldown_s: float = 15.0,
        clock: Clock = time.monotonic,
    ) -> None:
        self._window_s = window_s
        self._min_calls = min_calls
        self._failure_ratio = failure_ratio
        self._cooldown_s = cooldown_s
        self._clock = clock
        self._outcomes: deque[tuple[float, bool]] = deque()  # (time, failed)
        self._failures = 0
        self._state = BreakerState.CLOSED
        self._opened_at = 0.0
        self._probe_in_flight = False

    @property
    def state(self) -> BreakerState:
        if self._state is BreakerState.OPEN and self._cooldown_over():
            return BreakerState.HALF_OPEN
        return self._state

    def retry_after(self) -> float:
        """Seconds until this breaker lets a probe through (0 when it would now)."""
        if self._state is not BreakerState.OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown_s - self._clock())

    def allow(self) -> bool:
        """Whether a call may go out now. In half-open, only one probe at a time."""
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.OPEN:
            if not self._cooldown_over():
                return False
            self._state = BreakerState.HALF_OPEN
            self._probe_in_flight = False
        if self._probe_in_flight:
            return False
        self._probe_in_flight = True
        return True

    def record_success(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._close()
            return
        self._record(failed=False)

    def record_failure(self) -> None:
        if self._state is BreakerState.HALF_OPEN:
            self._open()
            return
        self._record(failed=True)
        calls = len(self._outcomes)
        if calls >= self._min_calls and self._failures / calls >= self._failure_ratio:
            self._open()

    def release(self) -> None:
        """A call ended without a verdict on the provider (cancelled, or the caller's fault)."""
        self._probe_in_flight = False

    def _record(self, *, failed: bool) -> None:
        now = self._clock()
        self._outcomes.append((now, failed))
        self._failures += failed
        horizon = now - self._window_s
        while self._outcomes and self._outcomes[0][0] < horizon:
            _, old_failed = self._outcomes.popleft()
            self._failures -= old_failed

    def _cooldown_over(self) -> bool:
        return self._clock() >= self._opened_at + self._cooldown_s

    def _open(self) -> None:
        self._state = BreakerState.OPEN
        self._opened_at = self._clock()
        self._probe_in_flight = False

    def _close(self) -> None:
        self._state = BreakerState.CLOSED
        self._outcomes.clear()
        self._failures = 0
        self._probe_in_flight = False
