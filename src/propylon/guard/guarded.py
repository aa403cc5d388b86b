"""The guard stage of the request path: a ``ChatService`` wrapping the next layer.

Before the call: user messages are scanned as ``user`` text and tool results as
``retrieved`` text; the worst verdict decides, under the policy of the call's tenant or route,
whether the request is blocked (400 ``prompt_injection_detected``), sanitised, or passed and
flagged. The canary, when configured, is appended to system prompts. After the call: the answer
is checked for leaked secrets and the canary; a streamed answer is checked as it accumulates
and ends with an error event when a check trips.

Every call gets ``x-propylon-guard`` (``pass``, ``flag``, ``sanitize``, ``block``, ``off``,
with the score and the signals) and ``call.guard``, which the request log records.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import AsyncIterator
from typing import Any

from propylon.errors import PromptInjectionDetected
from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import ChatService, ChatStream, JSONObject
from propylon.guard import heuristics
from propylon.guard.canary import place_canary
from propylon.guard.detector import InjectionDetector, Source, Verdict
from propylon.guard.messages import text_of, untrusted_pieces
from propylon.guard.output_scan import Finding, OutputScanner
from propylon.settings import GuardPolicy, GuardSettings

log = logging.getLogger(__name__)

HEADER = "x-propylon-guard"


class GuardedChatService:
    """Injection detection on the way in, secret and canary checks on the way out."""

    def __init__(
        self, inner: ChatService, detector: InjectionDetector, settings: GuardSettings
    ) -> None:
        self._inner = inner
        self._detector = detector
        self._settings = settings
        canary = settings.canary.get_secret_value() if settings.canary is not None else None
        self._canary = canary
        self._scanner = OutputScanner(canary=canary, secrets=True)

    def policy(self, call: CallInfo) -> GuardPolicy:
        """The tenant's policy if it has one, else the route's, else the default."""
        principal = call.principal
        if principal is not None:
            for key in (principal.tenant_id, principal.tenant_name):
                if key in self._settings.tenants:
                    return self._settings.tenants[key]
        return self._settings.routes.get(call.endpoint, self._settings.default)

    async def complete(self, request: JSONObject, call: CallInfo | None = None) -> JSONObject:
        call = call if call is not None else CallInfo()
        policy = self.policy(call)
        request = await self._inspect(request, call, policy)
        response = await self._inner.complete(request, call)
        if policy.output_checks:
            finding = self._scanner.check(_answer_text(response))
            if finding is not None:
                raise self._withheld(call, finding)
        return response

    async def stream(self, request: JSONObject, call: CallInfo | None = None) -> ChatStream:
        call = call if call is not None else CallInfo()
        policy = self.policy(call)
        request = await self._inspect(request, call, policy)
        stream = await self._inner.stream(request, call)
        if not policy.output_checks:
            return stream
        return _CheckedStream(stream, self, call)

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
        call.guard.update(
            {
                "action": outcome,
                "verdict": worst.to_dict() if worst is not None else None,
                "flagged": [
                    {"message": i, **v.to_dict()} for i, _, v in found if v.label != "benign"
                ],
                "ms": round((time.perf_counter() - started) * 1000.0, 2),
            }
        )
        call.response_headers[HEADER] = _header(outcome, worst)
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
        if self._canary is not None and policy.canary:
            request = place_canary(request, self._canary)
        return request

    def _withheld(self, call: CallInfo, finding: Finding) -> PromptInjectionDetected:
        call.guard["output"] = {"blocked": finding.kind}
        call.response_headers[HEADER] = f"block; output={finding.kind}"
        log.warning("answer withheld by output check", extra={"finding": finding.kind})
        what = "the system prompt's canary" if finding.kind == "canary" else "a secret key"
        return PromptInjectionDetected(
            f"The answer was withheld: it contained {what}.", code=finding.code
        )


class _CheckedStream:
    """Passes chunks on until the accumulated answer trips an output check."""

    def __init__(self, inner: ChatStream, guard: GuardedChatService, call: CallInfo) -> None:
        self._inner = inner
        self._guard = guard
        self._call = call
        self._check = guard._scanner.stream()

    def __aiter__(self) -> AsyncIterator[JSONObject]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[JSONObject]:
        async for chunk in self._inner:
            finding = self._check.feed(_delta_text(chunk))
            if finding is not None:
                raise self._guard._withheld(self._call, finding)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


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


def _answer_text(response: JSONObject) -> str:
    pieces: list[str] = []
    for choice in response.get("choices") or []:
        message = choice.get("message") or {} if isinstance(choice, dict) else {}
        pieces.append(text_of(message.get("content")))
        for tool_call in message.get("tool_calls") or []:
            function = tool_call.get("function") or {} if isinstance(tool_call, dict) else {}
            pieces.append(str(function.get("arguments") or ""))
    return "\n".join(pieces)


def _delta_text(chunk: JSONObject) -> str:
    pieces: list[str] = []
    for choice in chunk.get("choices") or []:
        delta = choice.get("delta") or {} if isinstance(choice, dict) else {}
        content = delta.get("content")
        if isinstance(content, str):
            pieces.append(content)
        for tool_call in delta.get("tool_calls") or []:
            function = tool_call.get("function") or {} if isinstance(tool_call, dict) else {}
            pieces.append(str(function.get("arguments") or ""))
    return "".join(pieces)
