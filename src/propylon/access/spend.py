"""What one finished call spent, computed in one place.

Layers report facts while a call runs (``CallInfo``: the usage the upstream gave or the
gateway estimated, whether the cache served it, the model that answered, the call's origin).
When the call has ended, ``spend_of`` turns those facts into one frozen ``Spend`` and
``outcome_of`` makes the call's one frozen ``CallOutcome`` with it (the limits layer, which
settles buckets and budgets with the spend, makes the outcome just after settling), so every
reader sees the same figures: the limiter, the usage tally (per-key spend), the request log,
the metrics and therefore ``/v1/stats``. Once the outcome is made, ``spend_of`` returns its
spend.

A cache hit spent nothing: 0 tokens and 0 dollars, in budgets, token limits, the request log,
the metrics and ``/v1/stats`` alike; what the cached answer's tokens would have cost is kept as
``saved_usd``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from propylon.access.budgets import PriceTable
from propylon.gateway.usage import token_count

if TYPE_CHECKING:
    from propylon.gateway.call import CallInfo, CallOutcome


@dataclass(frozen=True, slots=True)
class Spend:
    """The tokens and dollars of one finished call, as every reader sees them."""

    prompt_tokens: int | None  # spent (a cache hit: 0); None: no usage known
    completion_tokens: int | None
    cached_tokens: int | None  # of the prompt, served from the upstream's own cache
    cost_usd: float | None  # spent (a cache hit: 0); None: no price or no usage known
    saved_usd: float | None  # a cache hit: what the cached answer's tokens would have cost
    cache_hit: bool
    estimated: bool  # the upstream gave no usage: tokens counted by us
    internal: bool  # a call Propylon made for itself (``origin: internal``)

    @property
    def charged_prompt(self) -> int:
        """Prompt tokens charged to token limits and budgets (unknown: none)."""
        return self.prompt_tokens or 0

    @property
    def charged_completion(self) -> int:
        return self.completion_tokens or 0

    @property
    def charged_tokens(self) -> int:
        return self.charged_prompt + self.charged_completion

    @property
    def charged_usd(self) -> float:
        return self.cost_usd or 0.0


def outcome_of(call: CallInfo, prices: PriceTable) -> CallOutcome:
    """The call's one ``CallOutcome``, made on first use from its facts and their spend.
    Call it only once the call has ended (answer returned, stream closed, or raised)."""
    return call.outcome or call.conclude(spend_of(call, prices))


def spend_of(call: CallInfo, prices: PriceTable) -> Spend:
    """The call's ``Spend``: its outcome's once made, else computed from its final facts."""
    if call.outcome is not None:
        return call.outcome.spend
    usage: dict[str, Any] = call.usage or {}
    prompt = token_count(usage.get("prompt_tokens"))
    completion = token_count(usage.get("completion_tokens"))
    details = usage.get("prompt_tokens_details")
    cached = token_count(details.get("cached_tokens")) if isinstance(details, dict) else None
    model = call.model or call.requested_model  # priced by public name, never an alias
    cost: float | None = None
    if prices.priced(model) and (prompt is not None or completion is not None):
        cost = prices.cost(model, prompt or 0, completion or 0, cached or 0)
    hit = call.cache_hit
    return Spend(
        prompt_tokens=0 if hit else prompt,
        completion_tokens=0 if hit else completion,
        cached_tokens=0 if hit and cached is not None else cached,
        cost_usd=0.0 if hit else cost,
        saved_usd=cost if hit else None,
        cache_hit=hit,
        estimated=call.usage_estimated,
        internal=call.origin == "internal",
    )
