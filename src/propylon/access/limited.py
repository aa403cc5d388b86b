"""``LimitsLayer``: scopes, rate limits and budgets around the chat, embedding and rerank
services.

It sits outside the guard and the cache (see ``gateway/preflight.py`` for the order). For every
call made with an API key it:

1. checks the key's scopes: the feature (``chat``, ``embeddings``, ``rag``; rerank is
   an ``embeddings`` call, so keys made before it existed keep working) and the model
   (models served only by the local offline provider are open to every key) → 403;
2. estimates the tokens (prompt counted with ``TokenCounter``, only when a TPM limit or a
   budget needs it; completion = ``max_tokens`` / ``max_completion_tokens`` or the
   configured estimate) and their cost; a request whose own reservation exceeds a whole
   limit or budget → 429 ``insufficient_quota`` saying so;
3. reserves, in one atomic step shared by every replica, one request and the estimated
   tokens from the key's and tenant's RPM/TPM buckets and the estimated tokens and dollars
   from their budgets → 429 ``insufficient_quota`` when a budget cannot hold it (in-flight
   reservations included, so concurrent calls never overspend), 429
   ``rate_limit_exceeded`` with ``Retry-After`` when a rate limit is reached;
4. after the call, records its spend (``access.spend.spend_of``: the one figure the request
   log, metrics and ``/v1/stats`` read too) and settles every token and budget bucket to it
   (a call that used nothing gives back all it reserved; a cache hit spends nothing), then
   makes the call's outcome with that spend (``CallInfo.conclude``). Settling never raises:
   the upstream has been paid.

The ``x-ratelimit-*`` headers are reported to the call (``ResponseHeaders``) on success and
refusal.
Calls without a key pass straight through. Calls Propylon makes for a key (``origin:
internal``: summaries, query embeddings, the embeddings of a document the key uploaded) are
tallied as their own series, never held to rate limits (the request that caused them was), and
reserved from budgets only when ``AccessPolicy.internal_counts_against_budget``.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TypeGuard, TypeVar

import psycopg

from propylon.access.budgets import PriceTable, usd
from propylon.access.directory import KeyDirectory
from propylon.access.keys import KeyRecord
from propylon.access.limits import Charge, Limits, RateLimiter, rate_limit_headers
from propylon.access.spend import Spend, spend_of
from propylon.access.store import AccessStore
from propylon.access.usage import UsageRecorder
from propylon.errors import ModelNotAllowed, PermissionDenied, QuotaExceeded, RateLimited
from propylon.gateway.call import CallInfo, ResponseHeaders
from propylon.gateway.protocol import (
    ChatService,
    ChatStream,
    Embeddings,
    EmbeddingService,
    JSONObject,
    Ranking,
    RerankService,
)
from propylon.tokens import TokenCounter

log = logging.getLogger(__name__)

R = TypeVar("R")

Resolve = Callable[[str, str], str]  # (requested model, kind) -> public name; raises 404


@dataclass(frozen=True, slots=True)
class AccessPolicy:
    """What the configuration says about calls whose key sets nothing itself."""

    default_limits: Limits = field(default_factory=Limits)
    completion_estimate: int = 256
    cache_hits_count_rpm: bool = True  # a cache hit never counts against tokens or budgets
    # Calls Propylon makes for a key (origin "internal": RAG summaries, query embeddings...)
    # count against its and its tenant's budgets; they are recorded apart either way.
    internal_counts_against_budget: bool = True
    prices: PriceTable = field(default_factory=lambda: PriceTable({}))
    open_models: frozenset[str] = frozenset()  # served locally: allowed for every key


class LimitsLayer:
    """A ``ChatService``, ``EmbeddingService`` and ``RerankService`` that enforces access
    before delegating."""

    def __init__(
        self,
        chat: ChatService,
        embeddings: EmbeddingService,
        *,
        reranker: RerankService | None = None,
        directory: KeyDirectory,
        store: AccessStore,
        usage: UsageRecorder,
        limiter: RateLimiter,
        counter: TokenCounter,
        resolve: Resolve,
        policy: AccessPolicy,
        today: Callable[[], dt.date] = lambda: dt.datetime.now(dt.UTC).date(),
    ) -> None:
        self._chat = chat
        self._embeddings = embeddings
        self._reranker = reranker
        self._directory = directory
        self._store = store
        self._usage = usage
        self._limiter = limiter
        self._counter = counter
        self._resolve = resolve
        self._policy = policy
        self._today = today

    async def complete(self, request: JSONObject, call: CallInfo | None = None) -> JSONObject:
        admission = await self._admit_chat(request, call)
        if admission is None:
            return await self._chat.complete(request, call)
        try:
            return await self._chat.complete(request, call)
        finally:
            await admission.settle()

    async def stream(self, request: JSONObject, call: CallInfo | None = None) -> ChatStream:
        admission = await self._admit_chat(request, call)
        if admission is None:
            return await self._chat.stream(request, call)
        try:
            inner = await self._chat.stream(request, call)
        except BaseException:
            await admission.settle()
            raise
        return _SettlingStream(inner, admission)

    async def embed(
        self, texts: list[str], request: JSONObject | None = None, call: CallInfo | None = None
    ) -> Embeddings:
        return await self._admitted(
            call,
            request,
            "embeddings",
            texts,
            lambda: self._embeddings.embed(texts, request, call),
        )

    async def rerank(
        self,
        query: str,
        documents: list[str],
        request: JSONObject | None = None,
        call: CallInfo | None = None,
    ) -> Ranking:
        if self._reranker is None:
            raise RuntimeError("LimitsLayer was built without a reranker")
        reranker = self._reranker
        return await self._admitted(
            call,
            request,
            "rerank",
            [query, *documents],
            lambda: reranker.rerank(query, documents, request, call),
        )

    async def _admitted(
        self,
        call: CallInfo | None,
        request: JSONObject | None,
        kind: str,
        texts: list[str],
        run: Callable[[], Awaitable[R]],
    ) -> R:
        """An embeddings or rerank call: admitted on its input tokens (no completion), then
        settled with the call's spend (the tokens the provider counted, recorded on the call)."""
        model = (request or {}).get("model")
        admission = None
        if isinstance(model, str) and _has_key(call):
            feature = "rag" if call is not None and call.endpoint == "rag" else "embeddings"
            admission = await self._admit(
                call, feature, model, kind, lambda: sum(self._count(t, model) for t in texts), 0
            )
        if admission is None:
            return await run()
        try:
            return await run()
        finally:
            await admission.settle()

    async def _admit_chat(self, request: JSONObject, call: CallInfo | None) -> _Admission | None:
        model = request.get("model")
        if not isinstance(model, str) or not _has_key(call):
            return None  # the gateway's validation answers malformed requests
        feature = call.endpoint if call is not None and call.endpoint == "rag" else "chat"
        messages = request.get("messages")

        def prompt() -> int:
            return self._counter.count_messages(
                messages if isinstance(messages, list) else [], model, request.get("tools")
            )

        limit = request.get("max_completion_tokens", request.get("max_tokens"))
        completion = limit if _positive(limit) else self._policy.completion_estimate
        choices = request.get("n")  # each of `n` answers may take `max_tokens`
        return await self._admit(
            call,
            feature,
            model,
            "chat",
            prompt,
            completion * (choices if _positive(choices) else 1),
        )

    async def _admit(
        self,
        call: CallInfo | None,
        feature: str,
        requested: str,
        kind: str,
        prompt: Callable[[], int],
        completion: int,
    ) -> _Admission | None:
        """``prompt`` counts the prompt's tokens: called only when a token limit or a budget
        needs the estimate now (counting a long prompt costs tenths of a millisecond)."""
        if call is None or call.principal is None or call.principal.key_id is None:
            return None
        principal = call.principal
        record = self._directory.record(call.principal.key_id)
        if record is None:
            return None
        if not principal.has_feature(feature):
            raise PermissionDenied(
                f"This API key may not use `{feature}`.", code="feature_not_allowed"
            )
        model = self._resolve(requested, kind)
        if model not in self._policy.open_models and not principal.can_use_model(model):
            raise ModelNotAllowed(model)
        limits = record.limits.or_else(self._policy.default_limits)
        tenant_limits = record.tenant_limits
        counted: int | None = None
        budgeted = record.budget.is_set or record.tenant_budget.is_set
        if call.origin == "internal":
            # Made for a request the rate limits already admitted (or for an ingestion job):
            # never held to them again; budgets only when the configuration says so.
            limits = tenant_limits = Limits()
            budgeted = budgeted and self._policy.internal_counts_against_budget
        if limits.tpm is not None or tenant_limits.tpm is not None or budgeted:
            counted = prompt()
        tokens = (counted or 0) + completion  # charged only under a token limit, so counted
        cost = self._policy.prices.cost(model, counted or 0, completion)
        charges = _charges(f"k:{record.id}", limits, tokens)
        charges += _charges(f"t:{record.tenant_id}", tenant_limits, tokens)
        owners: dict[str, tuple[str, str]] = {}  # window key -> (whose, what period)
        if budgeted:
            for whose, charge, period in await self._budget_charges(record, tokens, cost):
                charges.append(charge)
                owners[charge.key] = (whose, period)
        way_out = (
            "raise the budget, or leave Propylon's own calls out of budgets "
            "(access.internal_counts_against_budget: false)"
            if call.origin == "internal"
            else "lower max_tokens or shorten the prompt"
        )
        _refuse_what_cannot_fit(charges, owners, counted or 0, completion, way_out)
        if charges:
            decision = await self._limiter.acquire(charges)
            call.report(ResponseHeaders(rate_limit_headers(decision.states)))
            if decision.exhausted is not None:
                whose, period = owners[decision.exhausted.key]
                raise QuotaExceeded(
                    f"You exceeded the current quota of this {whose} "
                    f"({_amount(decision.exhausted, decision.spent)} of "
                    f"{_amount(decision.exhausted, decision.exhausted.limit)} this {period} "
                    "already spent or reserved by calls in flight); this request would go over it."
                )
            if not decision.allowed:
                raise RateLimited(
                    "Rate limit reached for this API key or its tenant; retry after "
                    f"{decision.retry_after_s:.1f} s.",
                    retry_after=decision.retry_after_s,
                )
        return _Admission(self, record, call, model, charges, tokens, cost)

    async def _budget_charges(
        self, record: KeyRecord, tokens: int, cost: float
    ) -> list[tuple[str, Charge, str]]:
        """The budget windows this call reserves from, starting from the recorded spend."""
        try:
            spent = await self._store.spend(
                record, self._today(), internal=self._policy.internal_counts_against_budget
            )
        except (psycopg.Error, OSError) as exc:
            # The shared windows still hold what was reserved; only a window Redis has
            # forgotten starts from this process's unwritten spend alone.
            log.warning("budget floor unknown: database unavailable", extra={"error": str(exc)})
            spent = {"key_tokens": 0, "key_cost": 0.0, "tenant_tokens": 0, "tenant_cost": 0.0}
        # Spend this process has counted but not written yet (see access.usage).
        key_tokens, key_cost, tenant_tokens, tenant_cost = self._usage.pending(
            record, internal=self._policy.internal_counts_against_budget
        )
        out: list[tuple[str, Charge, str]] = []
        for whose, owner, budget, spent_tokens, spent_cost in (
            (
                "API key",
                f"k:{record.id}",
                record.budget,
                int(spent["key_tokens"]) + key_tokens,
                float(spent["key_cost"]) + key_cost,
            ),
            (
                "tenant",
                f"t:{record.tenant_id}",
                record.tenant_budget,
                int(spent["tenant_tokens"]) + tenant_tokens,
                float(spent["tenant_cost"]) + tenant_cost,
            ),
        ):
            start = budget.start(self._today()).isoformat()
            # A window outlives its period (the key names the period): 2 days, or 32 for months.
            ttl = (2 if budget.period == "day" else 32) * 86_400.0
            key = f"b:{owner}:{budget.period}:{start}"
            if budget.tokens is not None:
                charge = Charge(
                    f"{key}:tokens", "tokens", budget.tokens, tokens, ttl, True, spent_tokens
                )
                out.append((whose, charge, budget.period))
            if budget.cost_usd is not None:
                charge = Charge(f"{key}:usd", "usd", budget.cost_usd, cost, ttl, True, spent_cost)
                out.append((whose, charge, budget.period))
        return out

    def _count(self, text: str, model: str) -> int:
        return self._counter.count_text(text, model) if text else 0

    async def _settle(self, admission: _Admission, spend: Spend) -> None:
        """Record the spend, then move every token and budget bucket from the reservation to
        the real usage. Never raises: the upstream has been paid (see ``RateLimiter.adjust``).
        An answer served from the cache paid no upstream: it spends nothing."""
        self._usage.add(
            admission.record,
            spend.charged_prompt,
            spend.charged_completion,
            spend.charged_usd,
            internal=spend.internal,
        )
        tokens = spend.charged_tokens - admission.reserved
        dollars = spend.charged_usd - admission.reserved_cost
        deltas = [
            replace(c, cost=tokens if c.kind == "tokens" else dollars, floor=0.0)
            for c in admission.charges
            if (c.kind == "tokens" and tokens) or (c.kind == "usd" and dollars)
        ]
        if spend.cache_hit and not self._policy.cache_hits_count_rpm:
            deltas += [replace(c, cost=-1) for c in admission.charges if c.kind == "requests"]
        if deltas:
            decision = await self._limiter.adjust(deltas)
            admission.call.report(ResponseHeaders(rate_limit_headers(decision.states)))


@dataclass(slots=True)
class _Admission:
    """A call let through: what it reserved, to settle once with the real usage."""

    layer: LimitsLayer
    record: KeyRecord
    call: CallInfo
    model: str
    charges: list[Charge]
    reserved: int  # tokens
    reserved_cost: float  # US dollars
    settled: bool = False

    async def settle(self) -> None:
        """Settle once, with the call's ``Spend`` (nothing used: all reserved is given back)."""
        if not self.settled:
            self.settled = True
            spend = spend_of(self.call, self.layer._policy.prices)
            try:
                await self.layer._settle(self, spend)
            finally:  # the outcome, with the headers of the settled buckets, made once
                self.call.conclude(spend)


class _SettlingStream:
    """Relays chunks; when closed, settles with the call's spend (from the usage the gateway
    recorded: the upstream's, or its estimate of the text relayed)."""

    def __init__(self, inner: ChatStream, admission: _Admission) -> None:
        self._inner = inner
        self._admission = admission

    def __aiter__(self) -> AsyncIterator[JSONObject]:
        return self._inner.__aiter__()

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            await self._admission.settle()


def _positive(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _has_key(call: CallInfo | None) -> bool:
    return call is not None and call.principal is not None and call.principal.key_id is not None


def _charges(owner: str, limits: Limits, tokens: int) -> list[Charge]:
    out: list[Charge] = []
    if limits.rpm is not None:
        out.append(Charge(f"{owner}:rpm", "requests", limits.rpm, 1))
    if limits.tpm is not None:
        out.append(Charge(f"{owner}:tpm", "tokens", limits.tpm, tokens))
    return out


def _refuse_what_cannot_fit(
    charges: list[Charge],
    owners: dict[str, tuple[str, str]],
    prompt: int,
    completion: int,
    way_out: str,
) -> None:
    """A request whose own reservation is larger than a whole limit or budget could never
    pass: say so (waiting would not help), naming the limit and the way out."""
    for charge in charges:
        if charge.kind == "requests" or charge.cost <= charge.limit:
            continue
        if charge.window:
            whose, period = owners[charge.key]
            what = f"budget of {_amount(charge, charge.limit)} per {period}"
        else:
            whose = "API key" if charge.key.startswith("k:") else "tenant"
            what = f"limit of {_amount(charge, charge.limit)} per minute"
        raise QuotaExceeded(
            f"This request alone reserves {_amount(charge, charge.cost)} ({prompt} prompt "
            f"tokens + {completion} for the answer, from max_tokens or the default estimate), "
            f"more than this {whose}'s {what}; {way_out}."
        )


def _amount(charge: Charge, value: float) -> str:
    return usd(value) if charge.kind == "usd" else f"{int(value)} tokens"
