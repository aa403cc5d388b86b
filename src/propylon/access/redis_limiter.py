"""``RedisRateLimiter``: GCRA buckets and budget windows shared by every replica, one atomic
Lua script per call.

The script reads Redis's own clock (``TIME``), so replicas with drifting clocks agree, and
checks and charges all the buckets of one request in a single step: two processes can never
both take the last unit. When Redis cannot be reached at admission the limiter fails open
(admits, logs a warning, counts the failure in ``failures``; budgets still refuse what the
spend recorded in the database already rules out) or closed (503), as configured.
Settling never fails: an adjustment Redis does not take is kept (``owed``), counted in
``settle_failures``, and applied before the next call that reaches Redis.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from propylon.access.limits import Charge, Decision, bucket_state, without_shared_state
from propylon.errors import ServiceUnavailable

log = logging.getLogger(__name__)

# KEYS: one per bucket. ARGV[1]: "acquire" or "adjust"; then for each bucket "w" (a budget
# window) or "g" (GCRA), its period in milliseconds, its limit, the cost charged and the
# floor (windows: spend already recorded). Returns {allowed, retry_ms, exhausted (the index
# of the first window refused, 0 if none), then per bucket its backlog in ms (GCRA) or its
# spend (window)}; fractional values travel as strings, since Redis truncates Lua numbers.
GCRA_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local acquire = ARGV[1] == 'acquire'
local n = #KEYS
local old, new, window, period, retry, exhausted = {}, {}, {}, {}, 0, 0
local seen = {}  -- a key charged twice in one call is charged the sum
for i = 1, n do
  local at = 5 * i - 3
  window[i] = ARGV[at] == 'w'
  period[i] = tonumber(ARGV[at + 1])
  local limit = tonumber(ARGV[at + 2])
  local cost = tonumber(ARGV[at + 3])
  local stored = seen[KEYS[i]] or tonumber(redis.call('GET', KEYS[i]))
  if window[i] then
    local spent = math.max(stored or 0, tonumber(ARGV[at + 4]))
    local after = math.max(spent + cost, 0)
    if acquire and cost > 0 and after > limit and exhausted == 0 then exhausted = i end
    old[i], new[i] = spent, after
    seen[KEYS[i]] = after
  else
    local tat = stored or now
    if tat < now then tat = now end
    local after = tat + cost * period[i] / limit
    if after < now then after = now end
    if acquire then
      if cost > limit then
        retry = math.max(retry, period[i])
      elseif after - now > period[i] then
        retry = math.max(retry, after - period[i] - now)
      end
    end
    old[i], new[i] = tat, after
    seen[KEYS[i]] = after
  end
end
local function shown(i, values)
  if window[i] then return string.format('%.17g', values[i]) end
  return string.format('%.3f', values[i] - now)
end
local out = {}
if retry > 0 or exhausted > 0 then
  out[1], out[2], out[3] = 0, string.format('%.3f', retry), exhausted
  for i = 1, n do out[i + 3] = shown(i, old) end
  return out
end
out[1], out[2], out[3] = 1, '0', 0
for i = 1, n do
  if window[i] then
    redis.call('SET', KEYS[i], string.format('%.17g', new[i]), 'PX', math.ceil(period[i]))
  else
    redis.call('SET', KEYS[i], string.format('%.3f', new[i]), 'PX', math.ceil(new[i] - now) + 1000)
  end
  out[i + 3] = shown(i, new)
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
        self.settle_failures = 0  # adjustments Redis did not take at once (applied later)
        self._owed: dict[str, Charge] = {}  # adjustments to apply when Redis answers again
        self._last_warning = 0.0

    async def close(self) -> None:
        await self._client.aclose()

    @property
    def owed(self) -> int:
        """Buckets with an adjustment not yet applied (Redis was unreachable at settle)."""
        return len(self._owed)

    async def acquire(self, charges: Sequence[Charge]) -> Decision:
        await self._repay()
        try:
            return await self._run("acquire", charges)
        except (RedisError, OSError) as exc:
            return self._unavailable(exc, charges)

    async def adjust(self, charges: Sequence[Charge]) -> Decision:
        await self._repay()
        try:
            return await self._run("adjust", charges)
        except (RedisError, OSError) as exc:
            self.failures += 1
            self.settle_failures += 1
            self._owe(charges)
            self._warn("redis unavailable at settle: adjustment kept for later", exc)
            return Decision(True)

    def _owe(self, charges: Sequence[Charge]) -> None:
        for charge in charges:
            earlier = self._owed.get(charge.key)
            cost = charge.cost + (earlier.cost if earlier is not None else 0.0)
            self._owed[charge.key] = replace(charge, cost=cost, floor=0.0)
        if len(self._owed) > 100_000:  # bound memory through a very long outage
            self._owed.pop(next(iter(self._owed)))

    async def _repay(self) -> None:
        if not self._owed:
            return
        owed, self._owed = list(self._owed.values()), {}
        try:
            await self._run("adjust", owed)
        except (RedisError, OSError):
            self._owe(owed)

    async def _run(self, mode: str, charges: Sequence[Charge]) -> Decision:
        if not charges:
            return Decision(True)
        keys = [self._prefix + c.key for c in charges]
        args: list[Any] = [mode]
        for c in charges:
            args += ["w" if c.window else "g", c.period_s * 1000.0, c.limit, c.cost, c.floor]
        allowed, retry_ms, exhausted, *values = await self._script(keys=keys, args=args)
        states = tuple(
            bucket_state(c, float(v) / 1000.0)
            for c, v in zip(charges, values, strict=True)
            if not c.window
        )
        refused = int(exhausted)
        return Decision(
            bool(int(allowed)),
            float(retry_ms) / 1000.0,
            states,
            charges[refused - 1] if refused else None,
            float(values[refused - 1]) if refused else 0.0,
        )

    def _warn(self, message: str, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warning > 10.0:  # one warning per 10 s, not one per request
            self._last_warning = now
            log.warning(message, extra={"error": type(exc).__name__, "fail_open": self.fail_open})

    def _unavailable(self, exc: Exception, charges: Sequence[Charge]) -> Decision:
        self.failures += 1
        self._warn("redis unavailable for rate limits", exc)
        if self.fail_open:
            return without_shared_state(charges)
        raise ServiceUnavailable(
            "Rate limiting is unavailable; try again shortly.", retry_after=1.0
        ) from exc
