"""GCRA buckets with a cost, driven by a fake clock: bursts, refill, all-or-nothing, settling."""

from __future__ import annotations

import pytest

from propylon.access.limits import (
    BucketState,
    Charge,
    MemoryRateLimiter,
    duration,
    rate_limit_headers,
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def limiter(clock: Clock) -> MemoryRateLimiter:
    return MemoryRateLimiter(clock)


def rpm(limit: int, key: str = "k:rpm") -> Charge:
    return Charge(key, "requests", limit, 1)


def tpm(limit: int, cost: int, key: str = "k:tpm") -> Charge:
    return Charge(key, "tokens", limit, cost)


async def test_a_burst_of_exactly_the_limit_is_admitted(limiter: MemoryRateLimiter) -> None:
    decisions = [await limiter.acquire([rpm(10)]) for _ in range(15)]
    assert [d.allowed for d in decisions] == [True] * 10 + [False] * 5
    assert decisions[9].states[0].remaining == 0
    assert decisions[10].retry_after_s == pytest.approx(6.0)


async def test_the_bucket_refills_one_unit_per_interval(
    limiter: MemoryRateLimiter, clock: Clock
) -> None:
    for _ in range(10):
        assert (await limiter.acquire([rpm(10)])).allowed
    clock.now += 5.9
    assert not (await limiter.acquire([rpm(10)])).allowed
    clock.now += 0.1
    assert (await limiter.acquire([rpm(10)])).allowed
    assert not (await limiter.acquire([rpm(10)])).allowed


async def test_acquire_is_all_or_nothing(limiter: MemoryRateLimiter) -> None:
    assert (await limiter.acquire([rpm(100), tpm(1000, 900)])).allowed
    refused = await limiter.acquire([rpm(100), tpm(1000, 200)])
    assert not refused.allowed
    # The request bucket was not charged by the refused call: 99 remain, not 98.
    again = await limiter.acquire([rpm(100), tpm(1000, 100)])
    assert again.allowed
    assert [s.remaining for s in again.states] == [98, 0]


async def test_a_charge_larger_than_the_limit_is_refused_for_a_whole_period(
    limiter: MemoryRateLimiter,
) -> None:
    decision = await limiter.acquire([tpm(1000, 1001)])
    assert not decision.allowed
    assert decision.retry_after_s == 60.0


async def test_settling_gives_back_unused_tokens(limiter: MemoryRateLimiter) -> None:
    assert (await limiter.acquire([tpm(1000, 800)])).allowed
    assert not (await limiter.acquire([tpm(1000, 300)])).allowed
    settled = await limiter.adjust([tpm(1000, -600)])  # used 200 of the 800 reserved
    assert settled.states[0].remaining == 800
    assert (await limiter.acquire([tpm(1000, 300)])).allowed


async def test_settling_takes_more_when_the_estimate_was_low(
    limiter: MemoryRateLimiter, clock: Clock
) -> None:
    assert (await limiter.acquire([tpm(1000, 100)])).allowed
    settled = await limiter.adjust([tpm(1000, 1100)])  # used 1200: 200 over the limit
    assert settled.states[0].remaining == 0
    assert not (await limiter.acquire([tpm(1000, 1)])).allowed
    clock.now += 12.0  # the 200-token debt takes 12 s to repay at 1000/min
    assert not (await limiter.acquire([tpm(1000, 1)])).allowed
    clock.now += 0.06
    assert (await limiter.acquire([tpm(1000, 1)])).allowed


async def test_giving_back_never_fills_past_the_limit(limiter: MemoryRateLimiter) -> None:
    settled = await limiter.adjust([tpm(1000, -5000)])
    assert settled.states[0].remaining == 1000
    assert not (await limiter.acquire([tpm(1000, 1001)])).allowed


def test_headers_report_the_tightest_bucket_of_each_kind() -> None:
    headers = rate_limit_headers(
        [
            BucketState("requests", 100, 40, 36.0),
            BucketState("requests", 10, 2, 48.0),
            BucketState("tokens", 1000, 500, 30.0),
        ]
    )
    assert headers == {
        "x-ratelimit-limit-requests": "10",
        "x-ratelimit-remaining-requests": "2",
        "x-ratelimit-reset-requests": "48s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "500",
        "x-ratelimit-reset-tokens": "30s",
    }


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.02, "20ms"), (0.0, "0ms"), (1.0, "1s"), (6.2, "7s"), (360, "6m0s")]
)
def test_durations_read_like_openais(seconds: float, text: str) -> None:
    assert duration(seconds) == text


# -- budget windows -------------------------------------------------------------------------


def budget(limit: float, cost: float, floor: float = 0.0, key: str = "b:k:tokens") -> Charge:
    return Charge(key, "tokens", limit, cost, 86_400.0, window=True, floor=floor)


async def test_a_budget_window_admits_reservations_until_its_allowance_is_reserved(
    limiter: MemoryRateLimiter,
) -> None:
    decisions = [await limiter.acquire([budget(300, 100)]) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    refused = decisions[3]
    assert refused.exhausted == budget(300, 100)
    assert refused.spent == 300
    assert refused.retry_after_s == 0.0, "waiting does not refill a budget"


async def test_settling_a_window_gives_back_what_the_call_did_not_use(
    limiter: MemoryRateLimiter,
) -> None:
    assert (await limiter.acquire([budget(300, 200)])).allowed
    assert not (await limiter.acquire([budget(300, 150)])).allowed
    await limiter.adjust([budget(300, -180)])  # used 20 of the 200 reserved
    assert (await limiter.acquire([budget(300, 150)])).allowed
    await limiter.adjust([budget(300, -10_000)])
    assert (await limiter.acquire([budget(300, 300)])).allowed, "never below nothing spent"


async def test_a_window_starts_from_the_spend_already_recorded(
    limiter: MemoryRateLimiter,
) -> None:
    refused = await limiter.acquire([budget(300, 100, floor=250)])
    assert refused.exhausted is not None and refused.spent == 250
    assert (await limiter.acquire([budget(300, 50, floor=250)])).allowed


async def test_a_window_refusal_charges_no_other_bucket(limiter: MemoryRateLimiter) -> None:
    assert not (await limiter.acquire([rpm(1), budget(10, 20)])).allowed
    assert (await limiter.acquire([rpm(1)])).allowed, "the request was not counted"


async def test_a_window_ends_with_its_period(limiter: MemoryRateLimiter, clock: Clock) -> None:
    assert (await limiter.acquire([budget(300, 300)])).allowed
    clock.now += 86_400.0
    assert (await limiter.acquire([budget(300, 300)])).allowed
