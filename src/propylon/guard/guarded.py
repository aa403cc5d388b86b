"""The guard stage of the request path: a ``ChatService`` wrapping the next layer.

Before the call: user messages are scanned as ``user`` text and tool results as
``retrieved`` text; the worst verdict decides, under the policy of the call's tenant or route,
whether the request is blocked (400 ``prompt_injection_detected``), sanitised (and then never
passed through: the client's own body still holds the text removed), or passed and flagged.
The output checks (canaries, system-prompt overlap, secrets) live in ``leaks.py``, below the
response cache.

Every call gets ``x-propylon-guard`` (``pass``, ``flag``, ``sanitize``, ``block``, ``off``,
with the score and the signals), reported to the call with the verdict the request log records
(a ``GuardVerdict``).
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from propylon.errors import PromptInjectionDetected
from propylon.gateway.call import CallInfo, GuardVerdict
from propylon.gateway.protocol import NATIVE, ChatService, ChatStream, JSONObject
from propylon.guard import heuristics
from propylon.guard.detector import InjectionDetector, Source, Verdict
from propylon.guard.leaks import policy_for
from propylon.guard.messages import untrusted_pieces
from propylon.settings import GuardPolicy, GuardSettings

log = logging.getLogger(__name__)


class GuardedChatService:
    """Injection detection on the way in, secret and canary checks on the way out."""

    def __init__(
        self, inner: ChatService, detector: InjectionDetector, settings: GuardSettings
    ) -> None:
        self._inner = inner
        self._detector = detector
        self._settings = settings

    def policy(self, call: CallInfo) -> GuardPolicy:
        """The tenant's policy if it has one, else the route's, else the default."""
        return policy_for(self._settings, call)

    async def complete(self, request: JSONObject, call: CallInfo | None = None) -> JSONObject:
        call = call if call is not None else CallInfo()
        policy = self.policy(call)
        request = await self._inspect(request, call, policy)
        return await self._inner.complete(request, call)

    async def stream(self, request: JSONObject, call: CallInfo | None = None) -> ChatStream:
        call = call if call is not None else CallInfo()
        policy = self.policy(call)
        request = await self._inspect(request, call, policy)
        return await self._inner.stream(request, call)

    async def _inspect(
        self, request: JSONObject, call: CallInfo, policy: GuardPolicy
    ) -> JSONObject:
        started = time.perf_counter()
        messages = request.get("messages")
        found: list[tuple[int, Source, Verdict]] = []
        if isinstance(messages, list):
            pieces = untrusted_pieces(messages)
            for source in ("user", "retrieved"):
                action = policy.user_action if source == "user" else policy.retrieved_action
                chosen = [p for p in pieces if p.source == source]
                if action == "off" or not chosen:
                    continue
                classify = source == "user" or self._settings.retrieved_classifier
                verdicts = await self._detector.scan_many(
                    [p.text for p in chosen], source, classify=classify
                )
                found += [(p.index, source, v) for p, v in zip(chosen, verdicts, strict=True)]
        scanning = policy.user_action != "off" or policy.retrieved_action != "off"
        outcome = "pass" if scanning else "off"
        worst = max((v for _, _, v in found), key=lambda v: v.score, default=None)
        sanitise: list[int] = []
        for index, source, verdict in found:
            action = policy.user_action if source == "user" else policy.retrieved_action
            if verdict.label == "injection" and action == "block":
                if outcome != "block":
                    worst = verdict  # the header and the log show what blocked
                outcome = "block"
            elif verdict.label == "injection" and action == "sanitize":
                sanitise.append(index)
                outcome = outcome if outcome == "block" else "sanitize"
            elif verdict.label != "benign" and outcome in ("pass", "off"):
                outcome = "flag"
        facts: dict[str, Any] = {
            "action": outcome,
            "verdict": worst.to_dict() if worst is not None else None,
            "flagged": [{"message": i, **v.to_dict()} for i, _, v in found if v.label != "benign"],
            "ms": round((time.perf_counter() - started) * 1000.0, 2),
        }
        call.report(GuardVerdict(facts, _header(outcome, worst)))
        if outcome == "block":
            assert worst is not None
            log.warning(
                "prompt injection blocked",
                extra={
                    "score": round(worst.score, 4),
                    "signals": list(worst.signals),
                    "tenant": call.principal.tenant_id if call.principal else None,
                },
            )
            raise PromptInjectionDetected(
                "The request was blocked: it looks like a prompt injection "
                f"(score {worst.score:.2f}).",
                param="messages",
            )
        if sanitise and isinstance(messages, list):
            messages = [_sanitised(m) if i in sanitise else m for i, m in enumerate(messages)]
            request = {**request, "messages": messages}
            # The client's own body still holds what was removed: no passthrough, the
            # deployment gets the sanitised chat request (translated to its API if need be).
            extension = request.get("propylon")
            if isinstance(extension, dict) and NATIVE in extension:
                rest = {k: v for k, v in extension.items() if k != NATIVE}
                request = {k: v for k, v in request.items() if k != "propylon"}
                if rest:
                    request["propylon"] = rest
        return request


def _header(outcome: str, verdict: Verdict | None) -> str:
    if verdict is None:
        return outcome
    value = f"{outcome}; score={verdict.score:.3f}; label={verdict.label}"
    if verdict.signals:
        value += "; signals=" + ",".join(verdict.signals)
    return value


def _sanitise_text(text: str) -> str:
    """Hidden characters removed, and every sentence a heuristic fired on replaced."""
    visible = heuristics.strip_hidden(text)
    sentences = re.split(r"(?<=[.!?\n])\s+", visible)
    return " ".join(
        "[removed by guard]" if heuristics.scan(sentence) else sentence for sentence in sentences
    )


def _sanitised(message: Any) -> Any:
    content = message.get("content")
    if isinstance(content, str):
        return {**message, "content": _sanitise_text(content)}
    if isinstance(content, list):
        parts = [
            {**p, "text": _sanitise_text(p["text"])}
            if isinstance(p, dict) and isinstance(p.get("text"), str)
            else p
            for p in content
        ]
        return {**message, "content": parts}
    return message
