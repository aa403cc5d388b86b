"""``RedisRateLimiter``: GCRA buckets shared by every replica, one atomic Lua script per call.

The script reads Redis's own clock (``TIME``), so replicas with drifting clocks agree, and
checks and charges all the buckets of one request in a single step: two processes can never
both take the last unit. When Redis cannot be reached the limiter fails open (admits, logs a
warning, counts the failure in ``failures``) or closed (503), as configured.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from propylon.access.limits import Charge, Decision, bucket_state
from propylon.errors import ServiceUnavailable

log = logging.getLogger(__name__)

# KEYS: one per bucket. ARGV[1]: "acquire" or "adjust"; then for each bucket its period in
# milliseconds, its limit and the cost charged. Returns {allowed, retry_ms, backlog_ms...};
# fractional values travel as strings, since Redis truncates Lua numbers to integers.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local acquire = ARGV[1] == 'acquire'
local n = #KEYS
local old, new, retry = {}, {}, 0
for i = 1, n do
  local period = tonumber(ARGV[3 * i - 1])
  local limit = tonumber(ARGV[3 * i])
  local cost = tonumber(ARGV[3 * i + 1])
  local tat = tonumber(redis.call('GET', KEYS[i])) or now
  if tat < now then tat = now end
  local after = tat + cost * period / limit
  if after < now then after = now end
  if acquire then
    if cost > limit then
      retry = math.max(retry, period)
    elseif after - now > period then
      retry = math.max(retry, after - period - now)
    end
  end
  old[i], new[i] = tat, after
end
local out = {}
if retry > 0 then
  out[1], out[2] = 0, string.format('%.3f', retry)
  for i = 1, n do out[i + 2] = string.format('%.3f', old[i] - now) end
  return out
end
out[1], out[2] = 1, '0'
for i = 1, n do
  redis.call('SET', KEYS[i], string.format('%.3f', new[i]), 'PX', math.ceil(new[i] - now) + 1000)
  out[i + 2] = string.format('%.3f', new[i] - now)
end
return out
"""


class RedisRateLimiter:
    """GCRA buckets in Redis under ``prefix``; see ``RateLimiter`` for the contract."""

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "propylon:rl:",
        fail_open: bool = True,
        timeout_s: float = 0.5,
        max_connections: int = 16,
    ) -> None:
        # A bounded pool: a burst of requests queues for a few connections (one script is
        # ~0.1 ms) instead of opening one each, whose handshakes would time out under load.
        pool = BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            socket_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._client: Redis = Redis.from_pool(pool)
        self._script = self._client.register_script(GCRA_LUA)
        self._prefix = prefix
        self.fail_open = fail_open
        self.failures = 0  # Redis calls that failed; a metric for the observability part
        self._last_warning = 0.0

    async def close(self) -> None:
        await self._client.aclose()

    async def acquire(self, charges: Sequence[Charge]) -> Decision:
        return await self._run("acquire", charges)

    async def adjust(self, charges: Sequence[Charge]) -> Decision:
        return await self._run("adjust", charges)

    async def _run(self, mode: str, charges: Sequence[Charge]) -> Decision:
        if not charges:
            return Decision(True)
        keys = [self._prefix + c.key for c in charges]
        args: list[Any] = [mode]
        for c in charges:
            args += [c.period_s * 1000.0, c.limit, c.cost]
        try:
            reply = await self._script(keys=keys, args=args)
        except (RedisError, OSError) as exc:
            return self._unavailable(exc)
        allowed, retry_ms, *backlogs = reply
        states = tuple(
            bucket_state(c, float(b) / 1000.0) for c, b in zip(charges, backlogs, strict=True)
        )
        return Decision(bool(int(allowed)), float(retry_ms) / 1000.0, states)

    def _unavailable(self, exc: Exception) -> Decision:
        self.failures += 1
        now = time.monotonic()
        if now - self._last_warning > 10.0:  # one warning per 10 s, not one per request
            self._last_warning = now
            log.warning(
                "redis unavailable for rate limits",
                extra={"error": type(exc).__name__, "fail_open": self.fail_open},
            )
        if self.fail_open:
            return Decision(True)
        raise ServiceUnavailable(
            "Rate limiting is unavailable; try again shortly.", retry_after=1.0
        ) from exc
