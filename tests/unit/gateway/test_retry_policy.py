from __future__ import annotations

from propylon.errors import InvalidRequest, UpstreamError, UpstreamRateLimited, UpstreamTimeout
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


def test_a_timeout_after_sending_is_not_retried_by_default_but_falls_back() -> None:
    policy = RetryPolicy(attempts=3)
    after_send = UpstreamTimeout("no answer in time")
    assert policy.delay(0, after_send) is None
    assert policy.falls_back(after_send)
    before_send = UpstreamTimeout("no connection in time", after_send=False)
    assert policy.delay(0, before_send) is not None, "nothing was sent: safe to retry"


def test_what_follows_a_timeout_after_sending_is_configurable() -> None:
    after_send = UpstreamTimeout("no answer in time")
    assert RetryPolicy(attempts=3, timeouts="retry").delay(0, after_send) is not None
    assert not RetryPolicy(attempts=3, timeouts="fail").falls_back(after_send)
    assert RetryPolicy(attempts=3, timeouts="fail").falls_back(UpstreamError("x"))
