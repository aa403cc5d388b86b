"""What happened on one gateway call: the facts the layers report, and the outcome made of them.

The entry point (the HTTP route, or an inner caller: RAG, ingestion, runs) creates one
``CallInfo`` per call and fills in what was asked: who, which API, which request id and
parent (the request log's recorder and the legacy completions service complete it, before
anything happened). From then on no layer writes a field: each *reports*
what it did as a frozen fact, appended to the call's log (the gateway: the route, each
attempt and the usage; the cache: its verdict; the guard: its verdicts; the limits: their
headers). Nothing reported is ever overwritten; a later fact of the same kind is simply the
later one (the cache's ``miss`` then its sampled ``verify-agree``).

When the call has ended, its ``Spend`` is computed once (``access.spend``) and the log is
folded once into a frozen ``CallOutcome`` holding it (``conclude``: by the limits layer right
after settling with that spend, else by ``access.spend.outcome_of`` for the first reader); the
limiter, the usage tally, the request log, the metrics, the tracer and therefore
``/v1/stats`` all read those figures. A fact reported
after it was made is a bug in a layer: it is logged and left out, so no reader ever sees two
versions of a call. While the call runs, the properties below read the facts so far (the
response headers of a stream are sent before it ends).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, get_args

from propylon.principal import Principal

if TYPE_CHECKING:
    from propylon.access.spend import Spend

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of one deployment (the gateway)."""

    deployment: str
    outcome: str  # "ok", "skipped" (breaker open), or the error code that ended the attempt
    duration_ms: float

    @classmethod
    def since(cls, deployment: str, outcome: str, started: float) -> Attempt:
        return cls(deployment, outcome, (time.perf_counter() - started) * 1000.0)


@dataclass(frozen=True, slots=True)
class Routed:
    """The model asked for, and the public model it resolved to (aliases resolved: prices)."""

    requested_model: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class Answered:
    """The deployment whose answer the client got (the gateway)."""

    deployment: str


@dataclass(frozen=True, slots=True)
class UsageReported:
    """The answer's OpenAI ``usage``: the upstream's, ours when ``estimated``, or the cached
    answer's on a cache hit (kept to price what the hit saved)."""

    usage: Mapping[str, Any] | None
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class FirstToken:
    """A stream's first chunk reached the gateway (``perf_counter`` time)."""

    at: float = field(default_factory=time.perf_counter)


CacheStatus = Literal["hit-exact", "hit-semantic", "miss", "bypass", "verify-agree", "verify-wrong"]
CACHE_STATUSES: tuple[CacheStatus, ...] = get_args(CacheStatus)


@dataclass(frozen=True, slots=True)
class CacheVerdict:
    """The response cache's verdict (the request log's ``cache_status``); ``similarity``: of
    the semantic entry it found."""

    status: CacheStatus
    similarity: float | None = None


@dataclass(frozen=True, slots=True)
class GuardVerdict:
    """What the guard found (``facts``: recorded in the log's ``guard``) and its header."""

    facts: Mapping[str, Any]
    header: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseHeaders:
    """Headers a layer tells the client (the limits: their remaining allowances)."""

    headers: Mapping[str, str]


Fact = (
    Attempt
    | Routed
    | Answered
    | UsageReported
    | FirstToken
    | CacheVerdict
    | GuardVerdict
    | ResponseHeaders
)

GUARD_HEADER = "x-propylon-guard"


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """One call's facts folded into one record, with its spend; made once, never changed."""

    requested_model: str | None
    model: str | None
    deployment: str | None
    attempts: tuple[Attempt, ...]
    usage: Mapping[str, Any] | None
    usage_estimated: bool
    first_token_at: float | None
    upstream_ms: float
    cache_status: str | None
    cache_similarity: float | None
    guard: Mapping[str, Any]
    headers: Mapping[str, str]
    spend: Spend

    @property
    def calls(self) -> int:
        """Upstream calls made (skipped deployments excluded)."""
        return sum(1 for a in self.attempts if a.outcome != "skipped")


@dataclass(slots=True)
class CallInfo:
    """A call: what was asked (fields, set by the entry point), and what happened (facts)."""

    principal: Principal | None = None
    request_id: str | None = None
    endpoint: str = "chat"  # "chat" | "embeddings" | "rag" | "rerank" | "guard"
    # The wire API the client spoke: "chat" | "responses" | "messages" | "completions" (the
    # gateway then calls deployments in the legacy completions API).
    api: str = "chat"
    metadata: dict[str, Any] | None = None
    cache_control: str | None = None  # the request's Cache-Control header (no-cache, no-store)
    started: float = field(default_factory=time.perf_counter)
    # "user": a client's request; "internal": a call Propylon makes for itself (ingestion
    # embeddings, the guard's, RAG's inner model calls), recorded apart with the request or
    # job it served.
    origin: str = "user"
    parent_id: str | None = None
    # The id the client is shown for the answer when the entry point names it (Responses'
    # `resp_…`, Messages' `msg_…`), so the request log finds a feedback given by it; else the
    # chat completion's own id is recorded.
    response_id: str | None = None
    _facts: list[Fact] = field(default_factory=list, init=False, repr=False)
    _folded: _Folded | None = field(default=None, init=False, repr=False)
    _outcome: CallOutcome | None = field(default=None, init=False, repr=False)

    def report(self, *facts: Fact) -> None:
        """Append what a layer did. After the outcome was made: logged and left out."""
        if self._outcome is not None:
            log.warning(
                "a fact reported after the call's outcome was made is left out",
                extra={"facts": [type(f).__name__ for f in facts], "request_id": self.request_id},
            )
            return
        self._facts.extend(facts)

    @property
    def facts(self) -> tuple[Fact, ...]:
        return tuple(self._facts)

    def conclude(self, spend: Spend) -> CallOutcome:
        """Fold the facts into the call's one ``CallOutcome`` (``access.spend.outcome_of``
        calls this once, when the call has ended); later calls return the same record."""
        if self._outcome is None:
            now = self._fold()
            self._outcome = CallOutcome(
                requested_model=now.requested_model,
                model=now.model,
                deployment=now.deployment,
                attempts=now.attempts,
                usage=now.usage,
                usage_estimated=now.usage_estimated,
                first_token_at=now.first_token_at,
                upstream_ms=now.upstream_ms,
                cache_status=now.cache_status,
                cache_similarity=now.cache_similarity,
                guard=MappingProxyType(now.guard),
                headers=MappingProxyType(self.headers()),
                spend=spend,
            )
        return self._outcome

    @property
    def outcome(self) -> CallOutcome | None:
        """The call's outcome, once it has ended and ``outcome_of`` has made it."""
        return self._outcome

    @property
    def spend(self) -> Spend | None:
        return self._outcome.spend if self._outcome is not None else None

    # The facts so far, read while the call runs: folded in one pass, again after a report.

    def _fold(self) -> _Folded:
        if self._folded is None or self._folded.count != len(self._facts):
            self._folded = _Folded.of(self._facts)
        return self._folded

    @property
    def requested_model(self) -> str | None:
        return self._fold().requested_model

    @property
    def model(self) -> str | None:
        """The public model that answered: aliases resolved (for prices)."""
        return self._fold().model

    @property
    def deployment(self) -> str | None:
        return self._fold().deployment

    @property
    def attempts(self) -> tuple[Attempt, ...]:
        return self._fold().attempts

    @property
    def calls(self) -> int:
        """Upstream calls made (skipped deployments excluded)."""
        return sum(1 for a in self.attempts if a.outcome != "skipped")

    @property
    def upstream_ms(self) -> float:
        """Time spent waiting on upstreams (for the gateway's overhead)."""
        return self._fold().upstream_ms

    @property
    def usage(self) -> dict[str, Any] | None:
        usage = self._fold().usage
        return dict(usage) if usage else None

    @property
    def usage_reported(self) -> bool:
        """Some layer reported the usage (``None``: nothing billed, e.g. a local model)."""
        return self._fold().usage_reported

    @property
    def usage_estimated(self) -> bool:
        """The upstream gave no usage: tokens counted by us."""
        return self._fold().usage_estimated

    @property
    def first_token_at(self) -> float | None:
        return self._fold().first_token_at

    @property
    def cache_status(self) -> str | None:
        return self._fold().cache_status

    @property
    def cache_similarity(self) -> float | None:
        return self._fold().cache_similarity

    @property
    def cache_hit(self) -> bool:
        """Served from the response cache: no upstream was called or paid."""
        status = self.cache_status
        return status is not None and status.startswith("hit")

    @property
    def guard(self) -> dict[str, Any]:
        """The guard's verdicts, as the request log records them."""
        return dict(self._fold().guard)

    def headers(self) -> dict[str, str]:
        """Response headers that tell the client the path its request took."""
        now = self._fold()
        out = {"x-propylon-attempts": str(self.calls)}
        if now.attempts:
            out["x-propylon-route"] = ", ".join(f"{a.deployment}={a.outcome}" for a in now.attempts)
        if now.deployment is not None:
            out["x-propylon-deployment"] = now.deployment
        if now.cache_status is not None:
            out["x-propylon-cache"] = now.cache_status
        if now.cache_similarity is not None:
            out["x-propylon-cache-similarity"] = f"{now.cache_similarity:.4f}"
        out.update(now.headers)
        return out


@dataclass(frozen=True, slots=True)
class _Folded:
    """The facts of a call so far, in one pass: a later fact of a kind wins; attempts, guard
    verdicts and headers accumulate."""

    count: int
    guard: Mapping[str, Any]
    headers: Mapping[str, str]
    requested_model: str | None = None
    model: str | None = None
    deployment: str | None = None
    attempts: tuple[Attempt, ...] = ()
    upstream_ms: float = 0.0
    usage: Mapping[str, Any] | None = None
    usage_reported: bool = False
    usage_estimated: bool = False
    first_token_at: float | None = None
    cache_status: str | None = None
    cache_similarity: float | None = None

    @classmethod
    def of(cls, facts: list[Fact]) -> _Folded:
        now: dict[str, Any] = {}
        attempts: list[Attempt] = []
        guard: dict[str, Any] = {}
        headers: dict[str, str] = {}
        for fact in facts:
            if isinstance(fact, Attempt):
                attempts.append(fact)
            elif isinstance(fact, Routed):
                if fact.requested_model:
                    now["requested_model"] = fact.requested_model
                if fact.model:
                    now["model"] = fact.model
            elif isinstance(fact, Answered):
                now["deployment"] = fact.deployment
            elif isinstance(fact, UsageReported):
                now.update(usage=fact.usage, usage_reported=True, usage_estimated=fact.estimated)
            elif isinstance(fact, FirstToken):
                now.setdefault("first_token_at", fact.at)
            elif isinstance(fact, CacheVerdict):
                now["cache_status"] = fact.status
                if fact.similarity is not None:
                    now["cache_similarity"] = fact.similarity
            elif isinstance(fact, GuardVerdict):
                guard.update(fact.facts)
                if fact.header is not None:
                    headers[GUARD_HEADER] = fact.header
            else:
                headers.update(fact.headers)
        return cls(
            len(facts),
            guard,
            headers,
            attempts=tuple(attempts),
            upstream_ms=sum(a.duration_ms for a in attempts),
            **now,
        )
