"""Prometheus series of the access part, read at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from propylon.access.redis_limiter import RedisRateLimiter


class RedisLimiterCollector(Collector):
    """``propylon_ratelimit_redis_failures_total``: rate-limit calls Redis did not answer
    (admitted under fail-open, refused with 503 under fail-closed; settlements are never
    refused: ``propylon_ratelimit_settle_failures_total`` counts those kept for later and
    ``propylon_ratelimit_owed_buckets`` how many buckets still wait for theirs)."""

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
        settles = CounterMetricFamily(
            "propylon_ratelimit_settle_failures",
            "Settlements Redis did not take at once; kept and applied when it answers again.",
        )
        settles.add_metric([], self._limiter.settle_failures)
        yield settles
        owed = GaugeMetricFamily(
            "propylon_ratelimit_owed_buckets",
            "Buckets with a settlement waiting for Redis to answer again.",
        )
        owed.add_metric([], self._limiter.owed)
        yield owed
