"""Which fault strikes a request, given how often each has struck already."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from propylon.testing.behaviour import Fault


class FaultLedger:
    """Counts strikes so a fault with ``times=N`` fails N requests and then lets them pass.

    A fault is known by its position and value, so the same fault sent again in every
    ``x-fake-behaviour`` header shares one budget, which is how "fail twice, then recover"
    reads for per-request overrides too.
    """

    def __init__(self) -> None:
        self._strikes: Counter[tuple[int, Fault]] = Counter()

    def take(
        self, faults: Sequence[Fault], endpoint: str, model: str | None, stream: bool
    ) -> Fault | None:
        """The first matching fault with budget left, counting the strike; None to pass."""
        for position, fault in enumerate(faults):
            if not fault.matches(endpoint, model, stream):
                continue
            key = (position, fault)
            if fault.times is not None and self._strikes[key] >= fault.times:
                continue
            self._strikes[key] += 1
            return fault
        return None

    def clear(self) -> None:
        """Restore every budget, for a new behaviour or a reset."""
        self._strikes.clear()
