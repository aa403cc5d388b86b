from __future__ import annotations

from propylon.gateway.circuit_breaker import BreakerState, CircuitBreaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def state(b: CircuitBreaker) -> BreakerState:
    """Read afresh each time (mypy would otherwise narrow a property across calls)."""
    return b.state


def breaker(clock: Clock) -> CircuitBreaker:
    return CircuitBreaker(window_s=10, min_calls=4, failure_ratio=0.5, cooldown_s=5, clock=clock)


def test_stays_closed_below_min_calls() -> None:
    b = breaker(Clock())
    for _ in range(3):
        b.record_failure()
    assert state(b) is BreakerState.CLOSED
    assert b.allow()


def test_opens_when_failure_ratio_reached() -> None:
    b = breaker(Clock())
    b.record_success()
    b.record_success()
    b.record_failure()
    assert state(b) is BreakerState.CLOSED
    b.record_failure()
    assert state(b) is BreakerState.OPEN
    assert not b.allow()


def test_open_breaker_rejects_until_cooldown_then_lets_one_probe() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(4):
        b.record_failure()
    clock.now += 4.9
    assert not b.allow()
    assert b.retry_after() > 0
    clock.now += 0.2
    assert state(b) is BreakerState.HALF_OPEN
    assert b.allow(), "one probe goes through"
    assert not b.allow(), "only one probe at a time"


def test_successful_probe_closes_it() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(4):
        b.record_failure()
    clock.now += 6
    assert b.allow()
    b.record_success()
    assert state(b) is BreakerState.CLOSED
    assert b.allow()


def test_failed_probe_reopens_for_another_cooldown() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(4):
        b.record_failure()
    clock.now += 6
    assert b.allow()
    b.record_failure()
    assert state(b) is BreakerState.OPEN
    assert not b.allow()
    assert b.retry_after() == 5


def test_released_probe_frees_the_slot() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(4):
        b.record_failure()
    clock.now += 6
    assert b.allow()
    b.release()
    assert b.allow()


def test_old_failures_leave_the_window() -> None:
    clock = Clock()
    b = breaker(clock)
    for _ in range(3):
        b.record_failure()
    clock.now += 11
    b.record_failure()
    assert state(b) is BreakerState.CLOSED, "only one failure is inside the window"
