"""The kinds of step a run can take, registered by name in ``STEPS``.

A step receives its rendered parameters and a ``StepContext`` (the services it may use, the
principal it acts for, and a way to emit events) and returns a JSON-able output.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from propylon.db.database import Database
from propylon.db.named_queries import named_queries
from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import ChatService
from propylon.principal import Principal
from propylon.rag.search import SearchRequest, SearchService
from propylon.runs.events import RunEventLog
from propylon.runs.spec import ANSWER_OPTIONS, DEFAULT_TOP_K

TOKEN_FLUSH_S = 0.05


class Detector(Protocol):
    async def scan(
        self,
        text: str,
        source: Any = "user",
        *,
        principal: Principal | None = None,
        parent_id: str | None = None,
    ) -> Any: ...


@dataclass(slots=True)
class StepContext:
    run_id: str
    principal: Principal
    database: Database
    chat: ChatService
    search: SearchService | None
    detector: Detector | None
    log: RunEventLog
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)


Step = Callable[[StepContext, str, dict[str, Any]], Awaitable[dict[str, Any]]]


async def model_step(ctx: StepContext, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """A chat completion through the gateway, streamed as `token` events."""
    request = {**params["request"], "stream": True}
    request["stream_options"] = {"include_usage": True}
    return await _generate(ctx, name, request)


async def answer_step(ctx: StepContext, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """A RAG answer with citations (the `rag/<collection>` model), streamed as `token` events."""
    request = {
        "model": f"rag/{params['collection']}",
        "messages": [{"role": "user", "content": params["question"]}],
        "stream": True,
        "rag": {k: params[k] for k in ANSWER_OPTIONS if params.get(k) is not None},
    }
    return await _generate(ctx, name, request)


async def _generate(ctx: StepContext, name: str, request: dict[str, Any]) -> dict[str, Any]:
    call = CallInfo(principal=ctx.principal, endpoint="run")
    stream = await ctx.chat.stream(request, call)
    text, pending, extension, usage = "", "", None, None
    flushed = time.monotonic()
    try:
        async for chunk in stream:
            for choice in chunk.get("choices") or ():
                pending += (choice.get("delta") or {}).get("content") or ""
            extension = chunk.get("propylon") or extension
            usage = chunk.get("usage") or usage
            if pending and time.monotonic() - flushed >= TOKEN_FLUSH_S:
                await ctx.log.append_output(name, pending, first=not text)
                text += pending
                pending, flushed = "", time.monotonic()
    finally:
        await stream.aclose()
    if pending:
        await ctx.log.append_output(name, pending, first=not text)
        text += pending
    output: dict[str, Any] = {"text": text, "usage": usage, "deployment": call.deployment}
    if extension:
        output["citations"] = extension.get("citations", [])
    return output


async def search_step(ctx: StepContext, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """Hybrid (or `mode`) search over one collection."""
    if ctx.search is None:
        raise RuntimeError("search is not available in this process")
    request = SearchRequest.parse(params, default_top_k=DEFAULT_TOP_K)
    hits = await ctx.search.search(ctx.principal, [params["collection"]], request)
    results = [
        {
            "chunk_id": hit.chunk_id,
            "document_id": hit.document_id,
            "score": hit.score,
            "text": hit.text,
        }
        for hit in hits
    ]
    return {"hits": results, "text": "\n\n".join(str(hit["text"]) for hit in results)}


async def guard_step(ctx: StepContext, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The injection detector's verdict on a text."""
    if ctx.detector is None:
        raise RuntimeError("the guard is not available in this process")
    verdict = await ctx.detector.scan(
        params["text"],
        params.get("source", "user"),
        principal=ctx.principal,
        parent_id=f"run:{ctx.run_id}",
    )
    result: dict[str, Any] = verdict.to_dict()
    return result


async def verify_citations_step(
    ctx: StepContext, name: str, params: dict[str, Any]
) -> dict[str, Any]:
    """Check that every citation of an earlier answer quotes its document at its offsets."""
    citations = ctx.outputs.get(params["step"], {}).get("citations") or []
    checked = []
    async with ctx.database.connection() as conn:
        for citation in citations:
            ok = False
            if citation.get("document_id") and citation.get("quote"):
                cur = await conn.execute(
                    named_queries("propylon.runs")["document_slice"],
                    {
                        "document_id": citation["document_id"],
                        "tenant_id": ctx.principal.tenant_id,
                        "start": int(citation["start"]),
                        "length": int(citation["end"]) - int(citation["start"]),
                    },
                )
                row = await cur.fetchone()
                ok = row is not None and row["slice"] == citation["quote"]
            checked.append({"number": citation.get("number"), "verified": ok})
    verified = sum(1 for c in checked if c["verified"])
    return {"total": len(checked), "verified": verified, "citations": checked}


STEPS: dict[str, Step] = {
    "model": model_step,
    "answer": answer_step,
    "search": search_step,
    "guard": guard_step,
    "verify_citations": verify_citations_step,
}
