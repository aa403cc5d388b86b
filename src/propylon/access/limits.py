"""Rate limits: the ``RateLimiter`` seam and its in-process implementation.

Limits are GCRA (the generic cell rate algorithm: a token bucket kept as one timestamp per
bucket) with a cost argument, so one algorithm serves requests per minute (cost 1) and
tokens per minute (cost = estimated tokens). A bucket of ``limit`` per ``period_s`` refills
continuously at ``limit / period_s`` and holds at most ``limit``: a burst of ``limit`` is
admitted at once, then one unit every ``period_s / limit`` seconds.

Budgets are the other kind of bucket: a *window* holding a fixed allowance (tokens or
dollars) for a calendar day or month, never refilled, whose spend starts from at least what
the database has recorded (``floor``). Both kinds are reserved together, all or nothing, at
admission, and settled to the real usage when the call ends, so concurrent requests can never
spend more than a budget between them.

``MemoryRateLimiter`` is for a single process (``REDIS_URL`` unset); ``RedisRateLimiter``
(``redis_limiter.py``) shares buckets between replicas with one atomic Lua script.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from propylon.access import amounts
from propylon.params import only_fields

Kind = Literal["requests", "tokens", "usd"]


@dataclass(frozen=True, slots=True)
class Limits:
    """Requests and tokens per minute; ``None`` means unlimited."""

    rpm: int | None = None
    tpm: int | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None, where: str = "limits") -> Limits:
        """Limits an operator gives: each a whole number from 1 to 2^53, else a 400 naming
        it (``limits.rpm``)."""
        raw = raw or {}
        only_fields(raw, ("rpm", "tpm"), where)
        return cls(
            rpm=amounts.count(raw, "rpm", where, low=1), tpm=amounts.count(raw, "tpm", where, low=1)
        )

    @classmethod
    def stored(cls, raw: Mapping[str, Any] | None) -> Limits:
        """Limits as a row holds them (``parse``'s, or older ones: bounded)."""
        raw = raw or {}
        return cls(
            rpm=amounts.stored_count(raw.get("rpm")), tpm=amounts.stored_count(raw.get("tpm"))
        )

    def to_json(self) -> dict[str, int]:
        return {k: v for k, v in (("rpm", self.rpm), ("tpm", self.tpm)) if v is not None}

    def or_else(self, default: Limits) -> Limits:
        return Limits(
            rpm=self.rpm if self.rpm is not None else default.rpm,
            tpm=self.tpm if self.tpm is not None else default.tpm,
        )


@dataclass(frozen=True, slots=True)
class Charge:
    """``cost`` units taken from the bucket ``key`` holding ``limit`` per ``period_s``.

    A ``window`` charge (a budget) draws on a fixed allowance instead: ``limit`` for as long
    as the bucket lives (``period_s``, renewed by each charge; the caller names a new key for
    each calendar period), starting from at least ``floor`` already spent.
    """

    key: str
    kind: Kind
    limit: float
    cost: float
    period_s: float = 60.0
    window: bool = False
    floor: float = 0.0


@dataclass(frozen=True, slots=True)
class BucketState:
    """What a bucket holds after a decision, for the ``x-ratelimit-*`` headers."""

    kind: Kind
    limit: int
    remaining: int
    reset_s: float  # seconds until the bucket is full again


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0  # when refused: seconds until the same charges would pass
    states: tuple[BucketState, ...] = ()  # of the refilling (non-window) buckets, in order
    exhausted: Charge | None = None  # when refused: the first window whose allowance is spent
    spent: float = 0.0  # what ``exhausted`` had spent (or reserved) before this charge


class RateLimiter(Protocol):
    """Buckets shared by everything that uses the same limiter.

    * ``acquire(charges)`` is all or nothing: when every bucket can pay its charge, all of
      them are charged and the decision is allowed; otherwise none is charged, and
      ``retry_after_s`` says when the same charges would pass, or ``exhausted`` names the
      window whose allowance is spent (waiting will not help). A charge larger than its
      bucket's whole limit is refused with ``retry_after_s`` equal to the period. Concurrent
      acquires never over-admit, whichever process they come from (for a shared limiter).
    * ``adjust(charges)`` settles an earlier acquire: a positive cost takes more (the bucket
      may go into debt, delaying later acquires), a negative one gives back (never past
      full, never below nothing spent). It never refuses and never raises: an adjustment
      a shared backend cannot take now is kept, counted, and applied by a later call.
    * Both return the refilling buckets' states after the operation. Failures of a shared
      backend at acquire are the implementation's to handle (fail open or closed); callers
      see only decisions or ``propylon.errors`` exceptions.
    """

    async def acquire(self, charges: Sequence[Charge]) -> Decision: ...

    async def adjust(self, charges: Sequence[Charge]) -> Decision: ...


class MemoryRateLimiter:
    """GCRA buckets and budget windows in this process's memory (a single node).

    ``clock`` is for tests.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}  # theoretical arrival time per refilling bucket
        self._spent: dict[str, tuple[float, float]] = {}  # window: (spent, expires at)

    async def acquire(self, charges: Sequence[Charge]) -> Decision:
        now = self._clock()
        self._forget_full(now)
        proposed: list[float] = []
        seen: dict[str, float] = {}  # a key charged twice in one call is charged the sum
        retry = 0.0
        exhausted: Charge | None = None
        spent_before = 0.0
        for charge in charges:
            if charge.window:
                spent = seen.get(charge.key, self._window(charge, now))
                new = max(spent + charge.cost, 0.0)
                if exhausted is None and charge.cost > 0 and new > charge.limit:
                    exhausted, spent_before = charge, spent
            else:
                interval = charge.period_s / charge.limit
                tat = seen.get(charge.key, max(self._tat.get(charge.key, now), now))
                new = tat + charge.cost * interval
                if charge.cost > charge.limit:
                    retry = max(retry, charge.period_s)
                elif new - now > charge.period_s:
                    retry = max(retry, new - charge.period_s - now)
            seen[charge.key] = new
            proposed.append(new)
        if retry > 0 or exhausted is not None:
            states = [
                bucket_state(c, max(self._tat.get(c.key, now), now) - now)
                for c in charges
                if not c.window
            ]
            return Decision(False, retry, tuple(states), exhausted, spent_before)
        return Decision(True, 0.0, self._store(charges, proposed, now))

    async def adjust(self, charges: Sequence[Charge]) -> Decision:
        now = self._clock()
        proposed = []
        seen: dict[str, float] = {}
        for charge in charges:
            if charge.window:
                new = max(seen.get(charge.key, self._window(charge, now)) + charge.cost, 0.0)
            else:
                interval = charge.period_s / charge.limit
                tat = seen.get(charge.key, max(self._tat.get(charge.key, now), now))
                new = max(tat + charge.cost * interval, now)
            seen[charge.key] = new
            proposed.append(new)
        return Decision(True, 0.0, self._store(charges, proposed, now))

    def _window(self, charge: Charge, now: float) -> float:
        spent, expires = self._spent.get(charge.key, (0.0, now))
        return max(spent if expires > now else 0.0, charge.floor)

    def _store(
        self, charges: Sequence[Charge], values: Sequence[float], now: float
    ) -> tuple[BucketState, ...]:
        states = []
        for charge, value in zip(charges, values, strict=True):
            if charge.window:
                self._spent[charge.key] = (value, now + charge.period_s)
            else:
                self._tat[charge.key] = value
                states.append(bucket_state(charge, value - now))
        return tuple(states)

    def _forget_full(self, now: float) -> None:
        # Buckets whose TAT has passed are full, windows past their end are gone: dropping
        # them bounds memory.
        if len(self._tat) > 10_000:
            self._tat = {k: t for k, t in self._tat.items() if t > now}
        if len(self._spent) > 10_000:
            self._spent = {k: v for k, v in self._spent.items() if v[1] > now}


def without_shared_state(charges: Sequence[Charge]) -> Decision:
    """The decision of a limiter that cannot reach its shared state and fails open: rate
    limits admit, but a budget still refuses a charge past the spend already recorded (its
    ``floor``, read from the database), which no outage can make smaller."""
    for charge in charges:
        if charge.window and charge.cost > 0 and charge.floor + charge.cost > charge.limit:
            return Decision(False, 0.0, (), charge, charge.floor)
    return Decision(True)


def bucket_state(charge: Charge, backlog_s: float) -> BucketState:
    """The state of a bucket whose theoretical arrival time is ``backlog_s`` ahead of now."""
    interval = charge.period_s / charge.limit
    backlog_s = max(backlog_s, 0.0)
    remaining = math.floor((charge.period_s - backlog_s) / interval + 1e-9)
    limit = int(charge.limit)
    return BucketState(charge.kind, limit, max(0, min(limit, remaining)), backlog_s)


def rate_limit_headers(states: Sequence[BucketState]) -> dict[str, str]:
    """OpenAI's ``x-ratelimit-*`` headers from the tightest bucket of each kind."""
    out: dict[str, str] = {}
    for kind in ("requests", "tokens"):
        mine = [s for s in states if s.kind == kind]
        if not mine:
            continue
        tight = min(mine, key=lambda s: (s.remaining, -s.reset_s))
        out[f"x-ratelimit-limit-{kind}"] = str(tight.limit)
        out[f"x-ratelimit-remaining-{kind}"] = str(tight.remaining)
        out[f"x-ratelimit-reset-{kind}"] = duration(tight.reset_s)
    return out


def duration(seconds: float) -> str:
    """A duration the way OpenAI writes it: ``20ms``, ``1s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, round(seconds * 1000))}ms"
    whole = math.ceil(seconds)
    minutes, secs = divmod(whole, 60)
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"
