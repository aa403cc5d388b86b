"""Prometheus series of the access part, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from propylon.access.redis_limiter import RedisRateLimiter


class RedisLimiterCollector(Collector):
    """``propylon_ratelimit_redis_failures_total``: rate-limit calls Redis did not answer
    (admitted under fail-open, refused with 503 under fail-closed)."""

    def __init__(self, limiter: RedisRateLimiter) -> None:
        self._limiter = limiter

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "propylon_ratelimit_redis_failures",
            "Rate-limit checks that Redis did not answer.",
            labels=["mode"],
        )
        family.add_metric(
            ["fail_open" if self._limiter.fail_open else "fail_closed"], self._limiter.failures
        )
        yield family
