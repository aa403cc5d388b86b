"""The output half of the guard: answers that leak the system prompt, a canary or a secret
never reach the client.

``LeakCheckedChatService`` wraps the gateway *below* the response cache, so what it adds to a
request (a fresh canary in every system prompt) never enters a cache key, and what the cache
stores has passed its checks. For each call, under the policy of its tenant or route:

* a new canary (``canary.new_canary``), plus the operator's fixed one if set, is appended to
  the system prompt on the way to the model; the client never sees it, in the request log or
  the answer;
* the answer is checked for the canaries, for any run of ``leak_overlap_words`` words of the
  system prompt (not for models that answer by quoting their context, ``local/extractive``),
  and for credential shapes (``output_scan.py``). A leak withholds the answer:
  400 ``canary_leaked`` / ``system_prompt_leaked`` / ``secret_leaked``, or, once a stream has
  started, an error event in its place (the chunk holding the leak is never sent).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from propylon.errors import PromptInjectionDetected
from propylon.gateway.call import CallInfo, GuardVerdict
from propylon.gateway.protocol import ChatService, ChatStream, JSONObject
from propylon.guard.canary import new_canary, place_canary, system_prompt
from propylon.guard.messages import text_of
from propylon.guard.output_scan import Finding, OutputScanner, PromptOverlap
from propylon.settings import GuardPolicy, GuardSettings

log = logging.getLogger(__name__)

_WHAT = {
    "canary": "the system prompt's canary",
    "system_prompt": "a passage of the system prompt",
}


def policy_for(settings: GuardSettings, call: CallInfo) -> GuardPolicy:
    """The tenant's policy if it has one, else the route's, else the default."""
    principal = call.principal
    if principal is not None:
        for key in (principal.tenant_id, principal.tenant_name):
            if key in settings.tenants:
                return settings.tenants[key]
    return settings.routes.get(call.endpoint, settings.default)


class LeakCheckedChatService:
    """Canaries into system prompts on the way in; leaks withheld on the way out."""

    def __init__(
        self,
        inner: ChatService,
        settings: GuardSettings,
        *,
        quoting_models: frozenset[str] = frozenset(),
    ) -> None:
        self._inner = inner
        self._settings = settings
        # Models that answer by quoting their context verbatim (``local/extractive``): the
        # overlap check would withhold their every answer from a system prompt; they keep
        # secret system prompts out of their context themselves.
        self._quoting = quoting_models
        fixed = settings.canary.get_secret_value() if settings.canary is not None else None
        self._fixed = (fixed,) if fixed else ()

    async def complete(self, request: JSONObject, call: CallInfo | None = None) -> JSONObject:
        call = call if call is not None else CallInfo()
        request, scanner = self._prepare(request, call)
        response = await self._inner.complete(request, call)
        if scanner is not None:
            finding = scanner.check(_answer_text(response))
            if finding is not None:
                raise withheld(call, finding)
        return response

    async def stream(self, request: JSONObject, call: CallInfo | None = None) -> ChatStream:
        call = call if call is not None else CallInfo()
        request, scanner = self._prepare(request, call)
        stream = await self._inner.stream(request, call)
        return stream if scanner is None else _CheckedStream(stream, scanner, call)

    def _prepare(
        self, request: JSONObject, call: CallInfo
    ) -> tuple[JSONObject, OutputScanner | None]:
        policy = policy_for(self._settings, call)
        if not policy.output_checks:
            return request, None
        canaries: tuple[str, ...] = ()
        overlap = None
        system = system_prompt(request)
        if system:
            if policy.canary:
                canaries = (new_canary(), *self._fixed)
                request = place_canary(request, *canaries)
            if policy.leak_overlap_words and request.get("model") not in self._quoting:
                overlap = PromptOverlap(system, policy.leak_overlap_words)
        return request, OutputScanner(canaries=canaries, secrets=True, overlap=overlap)


def withheld(call: CallInfo, finding: Finding) -> PromptInjectionDetected:
    """The error that replaces an answer holding ``finding``; recorded on the call."""
    call.report(
        GuardVerdict({"output": {"blocked": finding.kind}}, f"block; output={finding.kind}")
    )
    log.warning("answer withheld by output check", extra={"finding": finding.kind})
    what = _WHAT.get(finding.kind, "a secret key")
    return PromptInjectionDetected(
        f"The answer was withheld: it contained {what}.", code=finding.code
    )


class _CheckedStream:
    """Passes chunks on until the accumulated answer trips an output check."""

    def __init__(self, inner: ChatStream, scanner: OutputScanner, call: CallInfo) -> None:
        self._inner = inner
        self._call = call
        self._check = scanner.stream()

    def __aiter__(self) -> AsyncIterator[JSONObject]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[JSONObject]:
        async for chunk in self._inner:
            finding = self._check.feed(_delta_text(chunk))
            if finding is not None:
                raise withheld(self._call, finding)
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


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
