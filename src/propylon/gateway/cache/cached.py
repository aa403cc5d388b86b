"""``CachedChatService``: the cache layer of the request path, wrapped around the gateway.

For each request it reads the caller's controls (``control.py``), computes the key
(``key.py``), tries the exact cache, then the semantic cache, and only then calls the layer it
wraps; a complete answer is stored on the way back (a stream once it has finished cleanly).
It reports its verdict to the ``CallInfo`` (a ``CacheVerdict``: ``hit-exact`` |
``hit-semantic`` | ``miss`` | ``bypass``, with the similarity of a semantic entry).

A share of would-be semantic hits (``semantic_verify_share``) is answered by the upstream
anyway, and the fresh answer compared with the cached one (the sampling of vCache, arXiv
2502.03771): ``cache_status`` becomes ``verify-agree`` or ``verify-wrong``, ``/v1/stats``
reports the observed wrong rate, and the entry's own threshold learns from the verdict
(``SemanticCache.learn``): raised above that wording after a wrong answer, eased back after
right ones. It is stored with the entry, so every replica applies it.

Identical requests in flight together are answered once (in this process): a request that
misses while the same one (same exact key: tenant, model, body) is being answered waits for
that answer and is served it as an exact hit, as it would have been a moment later from the
store; a leader that gets no answer the store would keep (an error, a cut answer) lets each
waiting request ask for itself. Streams are not coalesced.

Never fails a request because of the cache: a Redis outage, a slow or failing database and
an embedder error are all misses, logged and counted in ``stats``. Only a malformed
``propylon.cache`` extension is the caller's error (400).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import orjson

from propylon.background import WriterLoop
from propylon.gateway.cache.assembler import CompletionAssembler, cacheable
from propylon.gateway.cache.control import CacheDirective, cache_directive
from propylon.gateway.cache.exact import ExactCache
from propylon.gateway.cache.key import CacheKey, cache_key_off_loop
from propylon.gateway.cache.replay import ReplayedStream
from propylon.gateway.cache.semantic import (
    EmbedderFailed,
    Embedding,
    SemanticCache,
    SemanticHit,
)
from propylon.gateway.cache.stats import CacheStats
from propylon.gateway.call import CacheVerdict, CallInfo, Routed, UsageReported
from propylon.gateway.protocol import ChatService, ChatStream, JSONObject
from propylon.settings import CacheSettings
from propylon.storable import is_storable, unstorable_field

if TYPE_CHECKING:
    from propylon.gateway.cache.first_index import FirstIndex

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Plan:
    key: CacheKey
    directive: CacheDirective
    threshold: float
    semantic: bool
    embedding: Embedding | None = None
    first: Embedding | None = None  # the static vector, with a first stage
    sampled: SemanticHit | None = None  # a would-be hit the upstream answers for comparison


class CachedChatService:
    """A ``ChatService`` that serves repeated and paraphrased requests from the cache."""

    def __init__(
        self,
        inner: ChatService,
        *,
        settings: CacheSettings,
        exact: ExactCache,
        semantic: SemanticCache | None,
        resolve_model: Callable[[str], str],
        stats: CacheStats | None = None,
        sample: Callable[[], float] = random.random,
    ) -> None:
        self._inner = inner
        self._sample = sample
        self._settings = settings
        self._exact = exact
        self._semantic = semantic
        self._resolve = resolve_model
        self.stats = stats or CacheStats()
        self._skips_logged: set[str] = set()
        # Exact keys being answered now -> the answer the store would keep (None: none).
        self._inflight: dict[str, asyncio.Future[bytes | None]] = {}

    @property
    def semantic_index(self) -> FirstIndex | None:
        """The semantic cache's first-stage index, when there is one."""
        return None if self._semantic is None else self._semantic.index

    @property
    def writers(self) -> list[WriterLoop]:
        """The background writers of this layer (the semantic cache's write-behind)."""
        return [] if self._semantic is None else [self._semantic.writes.loop]

    async def complete(self, request: JSONObject, call: CallInfo | None = None) -> JSONObject:
        call = call or CallInfo()
        plan = await self._plan(request, call)
        if plan is not None and plan.directive.lookup:
            cached = await self._lookup(plan, call)
            if cached is not None:
                return cached
            if plan.directive.store and plan.sampled is None:
                return await self._coalesced(plan, request, call)
        return await self._answered(plan, request, call)

    async def _answered(
        self, plan: _Plan | None, request: JSONObject, call: CallInfo
    ) -> JSONObject:
        result = await self._inner.complete(request, call)
        if plan is not None:
            await self._finished(plan, result, call)
        return result

    async def _coalesced(self, plan: _Plan, request: JSONObject, call: CallInfo) -> JSONObject:
        """Answered by the same request already in flight, else by the upstream (and then
        shared with the same requests that arrive meanwhile)."""
        key = plan.key.exact
        leader = self._inflight.get(key)
        if leader is not None:
            # Shielded: a waiter that goes away does not cancel the others' wait.
            shared = await asyncio.shield(leader)
            if shared is None:
                return await self._answered(plan, request, call)
            answer: JSONObject = orjson.loads(shared)  # a copy of its own
            _served(call, CacheVerdict("hit-exact"), answer)
            self.stats.coalesced += 1
            return answer
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        shareable = None
        try:
            result = await self._inner.complete(request, call)
            shareable = await self._finished(plan, result, call)  # as the store kept it
            return result
        finally:
            del self._inflight[key]
            future.set_result(shareable)

    async def stream(self, request: JSONObject, call: CallInfo | None = None) -> ChatStream:
        call = call or CallInfo()
        plan = await self._plan(request, call)
        if plan is not None and plan.directive.lookup:
            cached = await self._lookup(plan, call)
            if cached is not None:
                options = request.get("stream_options")
                usage = isinstance(options, dict) and options.get("include_usage") is True
                return ReplayedStream(cached, include_usage=usage)
        stream = await self._inner.stream(request, call)
        if plan is None or not (plan.directive.store or plan.sampled):
            return stream
        return _RecordingStream(stream, plan, self, call)

    async def purge(self, *, tenant_id: str | None = None, model: str | None = None) -> JSONObject:
        """Delete cached answers of a tenant, a model (public name or alias), or both."""
        if model is not None:
            # A model no longer configured may still have entries under its name.
            with contextlib.suppress(Exception):
                model = self._resolve(model)
        exact = await self._exact.purge(tenant_id=tenant_id, model=model)
        semantic = (
            await self._semantic.purge(tenant_id=tenant_id, model=model) if self._semantic else 0
        )
        log.info(
            "cache purged",
            extra={"tenant_id": tenant_id, "model": model, "exact": exact, "semantic": semantic},
        )
        return {"exact": exact, "semantic": semantic}

    async def _plan(self, request: JSONObject, call: CallInfo) -> _Plan | None:
        """The key and orders for this request, or None (bypass: ``cache_status`` set)."""
        directive = cache_directive(request, call.cache_control, self._settings)
        principal = call.principal
        name = request.get("model")
        plan = None
        if not directive.bypass and principal is not None and isinstance(name, str):
            try:
                model = self._resolve(name)
                call.report(Routed(model=model))  # a hit never reaches the gateway
                key = await cache_key_off_loop(
                    request,
                    tenant_id=principal.tenant_id,
                    model=model,
                    salt=self._settings.model_salts.get(model, ""),
                    semantic=directive.semantic and self._semantic is not None,
                )  # without a semantic cache to ask, ``key.question`` is None
            except Exception:
                key = None  # unknown model or malformed request: the gateway will say so
            if key is not None:
                threshold = directive.threshold or self._settings.semantic_thresholds.get(
                    model, self._settings.semantic_threshold
                )
                semantic = (
                    key.question is not None
                    and 0 < len(key.question) <= self._settings.semantic_max_chars
                )
                plan = _Plan(key, directive, threshold, semantic)
        if plan is None or not directive.lookup:
            call.report(CacheVerdict("bypass"))
            self.stats.bypasses += 1
        else:
            call.report(CacheVerdict("miss"))
        return plan

    async def _lookup(self, plan: _Plan, call: CallInfo) -> JSONObject | None:
        cached = await self._exact.get(plan.key)
        if cached is not None:
            _served(call, CacheVerdict("hit-exact"), cached)
            self.stats.hits_exact += 1
            return cached
        if plan.semantic and self._semantic is not None:
            hit = await self._semantic_lookup(self._semantic, plan)
            if hit is not None and self._sample() < self._settings.semantic_verify_share:
                plan.sampled = hit  # the upstream answers; ``_finished`` compares
                call.report(CacheVerdict("miss", hit.similarity))
                return None
            if hit is not None:
                _served(call, CacheVerdict("hit-semantic", hit.similarity), hit.response)
                self.stats.hits_semantic += 1
                return hit.response
        self.stats.misses += 1
        return None

    async def _semantic_lookup(self, semantic: SemanticCache, plan: _Plan) -> SemanticHit | None:
        assert plan.key.question is not None
        stage = "embedder"
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self._settings.semantic_timeout_s):
                if semantic.first_stage is not None:
                    plan.first = await semantic.first_stage.vector(plan.key.question)
                    stage = "database"
                    found = await semantic.find_staged(
                        plan.key, plan.key.question, plan.first, plan.threshold
                    )
                    plan.embedding = found.embedding
                else:
                    plan.embedding = await semantic.embed(plan.key.question)
                    stage = "database"
                    found = await semantic.find(
                        plan.key, plan.key.question, plan.embedding, plan.threshold
                    )
        except Exception as exc:
            source = "embedder" if isinstance(exc, EmbedderFailed) else stage
            self._failed("timeout" if isinstance(exc, TimeoutError) else source, "lookup", exc)
            return None
        self.stats.rejected += found.rejected
        log.debug(
            "semantic lookup",
            extra={
                "best_similarity": found.best_similarity,
                "hit": found.hit is not None,
                "ms": (time.perf_counter() - started) * 1000,
            },
        )
        return found.hit

    async def _finished(self, plan: _Plan, response: JSONObject, call: CallInfo) -> bytes | None:
        """A complete answer from the upstream: compared if sampled, stored if allowed; the
        answer as the exact cache keeps it (None: not kept)."""
        if plan.sampled is not None:
            await self._verify(plan.sampled, response, call)
        return await self._store(plan, response) if plan.directive.store else None

    async def _verify(self, hit: SemanticHit, response: JSONObject, call: CallInfo) -> None:
        cached, fresh = _answer(hit.response), _answer(response)
        agree = cached == fresh
        if not agree and self._semantic is not None:
            try:
                async with asyncio.timeout(self._settings.semantic_timeout_s):
                    a = await self._semantic.embed(cached)
                    b = await self._semantic.embed(fresh)
            except Exception as exc:
                self._failed(
                    "timeout" if isinstance(exc, TimeoutError) else "embedder", "verify", exc
                )
                return
            agree = a.similarity(b) >= self._settings.semantic_agreement
        call.report(CacheVerdict("verify-agree" if agree else "verify-wrong"))
        self.stats.verified += 1
        if not agree:
            self.stats.verified_wrong += 1
            log.info(
                "sampled semantic hit disagreed with the upstream",
                extra={
                    "entry_id": hit.entry_id,
                    "similarity": hit.similarity,
                    "probability": hit.probability,
                },
            )
        if self._semantic is not None:
            try:
                async with asyncio.timeout(self._settings.semantic_timeout_s):
                    await self._semantic.learn(hit, right=agree)
            except Exception as exc:
                self._failed(
                    "timeout" if isinstance(exc, TimeoutError) else "database", "learn", exc
                )

    async def _store(self, plan: _Plan, response: JSONObject) -> bytes | None:
        """Keep ``response`` (exact, and semantic when asked); it as the exact cache keeps
        it, or None when it keeps nothing (a choice cut or filtered, an answer larger than
        ``max_entry_bytes``)."""
        choices = response.get("choices")
        if not isinstance(choices, list) or not choices:
            return None
        if not all(isinstance(c, dict) and cacheable(c.get("finish_reason")) for c in choices):
            return None
        encoded = orjson.dumps(response)
        if len(encoded) > self._settings.max_entry_bytes:
            return None
        ttl = plan.directive.ttl_s
        await self._exact.put(plan.key, response, ttl)
        self.stats.stores += 1
        if not plan.semantic or self._semantic is None:
            return encoded
        assert plan.key.question is not None
        reason = _unstorable(plan.key.question, response, encoded)
        if reason is not None:
            self._skipped(reason)
            return encoded
        stage = "embedder"
        try:
            async with asyncio.timeout(self._settings.semantic_timeout_s):
                first_stage = self._semantic.first_stage
                if first_stage is not None and plan.first is None:
                    plan.first = await first_stage.vector(plan.key.question)
                elif first_stage is None and plan.embedding is None:
                    plan.embedding = await self._semantic.embed(plan.key.question)
                stage = "database"
                await self._semantic.add(
                    plan.key, plan.key.question, plan.embedding, response, ttl, plan.first, encoded
                )
        except Exception as exc:
            self._failed("timeout" if isinstance(exc, TimeoutError) else stage, "store", exc)
        return encoded

    def _skipped(self, reason: str) -> None:
        self.stats.skipped[reason] += 1
        if reason not in self._skips_logged:  # once per reason: the counter tells the rest
            self._skips_logged.add(reason)
            log.warning(
                "semantic cache: an entry PostgreSQL cannot store as served was not cached "
                "(%s; later ones only counted in skipped)",
                reason,
            )

    def _failed(self, source: str, op: str, exc: BaseException) -> None:
        self.stats.errors[source] += 1
        log.warning(
            "semantic cache %s failed (%s); served as a miss",
            op,
            source,
            extra={"error": repr(exc)},
        )


class _RecordingStream:
    """Passes a live stream through and caches the answer once it has finished cleanly."""

    def __init__(
        self, inner: ChatStream, plan: _Plan, cache: CachedChatService, call: CallInfo
    ) -> None:
        self._inner = inner
        self._plan = plan
        self._cache = cache
        self._call = call

    def __aiter__(self) -> AsyncIterator[JSONObject]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[JSONObject]:
        assembler = CompletionAssembler()
        async for chunk in self._inner:
            assembler.add(chunk)
            yield chunk
        completion = assembler.completion()
        if completion is not None:
            await self._cache._finished(self._plan, completion, self._call)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _unstorable(question: str, response: JSONObject, encoded: bytes) -> str | None:
    """Why the semantic cache cannot keep this entry as it was served, if it cannot: a NUL
    (or a lone surrogate) in the question or the answer, which PostgreSQL refuses. Escaping it
    (``storable.escape_unstorable``) would keep the row but serve ``\\u0000`` as six
    characters, not the answer the client first got, so the entry is skipped instead.
    orjson writes a NUL as ``\\u0000`` (and no answer holds a lone surrogate: orjson parsed
    it), so only an answer whose JSON holds those bytes is walked."""
    if not is_storable(question):
        return "unstorable_question"
    if b"\\u0000" in encoded and unstorable_field(response, "response") is not None:
        return "unstorable_answer"
    return None


def _served(call: CallInfo, verdict: CacheVerdict, answer: JSONObject) -> None:
    """The cache answered: no upstream was paid; the cached answer's usage is reported to
    price what the hit saved (``access.spend``)."""
    usage = answer.get("usage")
    call.report(verdict, UsageReported(usage if isinstance(usage, dict) else None))


def _answer(response: JSONObject) -> str:
    """The answer's text, case and spacing aside: what two answers must share to be equal."""
    texts = []
    for choice in response.get("choices") or []:
        message = choice.get("message") if isinstance(choice, dict) else None
        content = message.get("content") if isinstance(message, dict) else None
        texts.append(content if isinstance(content, str) else "")
    return re.sub(r"\s+", " ", " ".join(texts)).strip().lower()
