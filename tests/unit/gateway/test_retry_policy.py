from __future__ import annotations

from propylon.errors import InvalidRequest, UpstreamError, UpstreamRateLimited
from propylon.gateway.retry import RetryPolicy


def test_backoff_is_capped_exponential_with_jitter() -> None:
    policy = RetryPolicy(attempts=10, base_delay_s=0.1, max_delay_s=0.5, random=lambda: 1.0)
    delays = [policy.delay(a, UpstreamError("x")) for a in range(5)]
    assert delays == [0.1, 0.2, 0.4, 0.5, 0.5]
    jittered = RetryPolicy(attempts=3, base_delay_s=0.1, random=lambda: 0.25)
    assert jittered.delay(0, UpstreamError("x")) == 0.025


def test_non_retryable_errors_are_not_retried() -> None:
    assert RetryPolicy(attempts=5).delay(0, InvalidRequest("bad")) is None


def test_attempts_are_bounded() -> None:
    policy = RetryPolicy(attempts=2)
    assert policy.delay(0, UpstreamError("x")) is not None
    assert policy.delay(1, UpstreamError("x")) is None


def test_retry_after_is_honoured_when_short_and_skipped_when_long() -> None:
    policy = RetryPolicy(attempts=3, max_retry_after_s=2)
    assert policy.delay(0, UpstreamRateLimited("slow down", retry_after=1.5)) == 1.5
    assert policy.delay(0, UpstreamRateLimited("slow down", retry_after=30)) is None
