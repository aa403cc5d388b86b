"""Answers with citations: retrieve → budget → call the chat model → map citations back.

The chat model is called through the injected ``ChatService`` — the gateway chain — so the
cache, limits, budgets, guard, fallbacks and the request log apply to RAG calls as to any other.
The prompt is ``[system] + history + [user: fenced sources + question]`` (``rag.prompt``), and
its size is planned before anything is sent:

    window = the model's context window (or ``retrieval.default_context_window``)
    available = window − answer tokens − system − question − framing
    history ≤ history_share · available  (older turns compacted: ``rag.conversations``)
    context ≤ min(max_context_tokens, available − history)

and checked once more on the final messages with the model's tokenizer, dropping the least
relevant source until it fits. Each answer reports the tokens spent on each part.

Citations: the local extractive model returns each quoted sentence with offsets into its
source's text; those become offsets into ``documents.text`` (``text[start:end]`` is the
quoted sentence), with the chunk and page containing it. A generative model's ``[N]`` markers
cite source N: the citation covers that source's whole passage.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Tracer

from propylon.db.database import Database
from propylon.errors import InvalidRequest
from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import ChatService, ChatStream, JSONObject
from propylon.observe.context import current_request
from propylon.observe.tracing import mark_root, span
from propylon.principal import Principal
from propylon.rag.context_budget import Passage, fit, merge_neighbours
from propylon.rag.conversations import (
    Conversation,
    ConversationStore,
    HistoryPlan,
    Turn,
    plan_history,
)
from propylon.rag.prompt import (
    FencedSource,
    PassageMarker,
    defuse,
    fence,
    fence_one,
    source_block,
    system_prompt,
    unmark,
    user_message,
)
from propylon.rag.retrieval_queries import QUERIES
from propylon.rag.search import Mode, SearchHit, SearchRequest, SearchService
from propylon.tokens import TokenCounter

_MARKER = re.compile(r"\[(\d{1,4})\]")
FRAMING_TOKENS = 24  # "Sources:", "Question:", blank lines, reply priming


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What the answer path needs to know about a chat model."""

    name: str
    context_window: int | None
    tokenizer_model: str  # the name the token counter picks an encoding by
    local: bool  # served only by local providers: cannot summarise


Describe = Callable[[str], ModelInfo]


@dataclass(frozen=True, slots=True)
class AnswerOptions:
    answer_model: str = "local/extractive"
    top_k: int = 8
    default_context_window: int = 8192
    max_context_tokens: int = 6000
    answer_max_tokens: int = 512
    history_share: float = 0.35
    keep_turns: int = 2
    exclude_risk_at: float | None = 0.78  # chunks this likely to be injections stay out


@dataclass(frozen=True, slots=True)
class AnswerRequest:
    collection: str
    question: str
    top_k: int | None = None
    mode: Mode = "hybrid"
    filter: dict[str, Any] = field(default_factory=dict)
    model: str | None = None
    conversation_id: str | None = None
    history: list[Turn] | None = None  # client-side history (OpenAI messages), when no id
    instructions: str = ""  # the client's own system prompt (chat completions)
    max_tokens: int | None = None  # the answer's bound; None: `rag.answer_max_tokens`


@dataclass(slots=True)
class Prepared:
    """A planned prompt, ready to send; ``finish`` turns the model's reply into the answer."""

    request: JSONObject
    sources: list[FencedSource]
    plan: HistoryPlan
    conversation: Conversation | None
    question: str
    usage: dict[str, Any]


class Answerer:
    def __init__(
        self,
        database: Database,
        search: SearchService,
        chat: ChatService,
        conversations: ConversationStore,
        counter: TokenCounter,
        describe: Describe,
        options: AnswerOptions,
        marker: PassageMarker | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self._tracer = tracer  # None: tracing is off
        self._database = database
        self._search = search
        self._chat = chat
        self._conversations = conversations
        self._counter = counter
        self._describe = describe
        self.options = options
        self._marker = marker

    async def answer(
        self, principal: Principal, request: AnswerRequest, call: CallInfo | None = None
    ) -> JSONObject:
        with self._root(principal, request):
            prepared = await self.prepare(principal, request, call)
            reply = await self._chat.complete(prepared.request, call)
            choice = (reply.get("choices") or [{}])[0]
            message = choice.get("message") or {}
            content = message.get("content") or ""
            raw = (reply.get("propylon") or {}).get("citations") or []
            with span(self._tracer, "propylon.verify") as verify:
                citations = map_citations(prepared.sources, content, raw)
                if verify.is_recording():
                    verify.set_attributes(_citation_attributes(citations))
            await self.remember(prepared, content, citations)
        usage = dict(prepared.usage)
        usage.update(reply.get("usage") or {})
        return {
            "id": f"rag-{uuid.uuid4().hex}",
            "object": "rag.answer",
            "created": int(time.time()),
            "model": prepared.request["model"],
            "answer": content,
            "citations": citations,
            "sources": [_source_json(s) for s in prepared.sources],
            "conversation_id": prepared.conversation.id if prepared.conversation else None,
            "usage": usage,
            "finish_reason": choice.get("finish_reason") or "stop",  # `length`: cut
        }

    async def prepare(
        self, principal: Principal, request: AnswerRequest, call: CallInfo | None = None
    ) -> Prepared:
        if not request.question.strip():
            raise InvalidRequest("The question is empty.", param="question")
        options = self.options
        collections = await self._search.resolve(principal.tenant_id, [request.collection])
        info = self._describe(request.model or options.answer_model)
        window = info.context_window or options.default_context_window
        answer_tokens = request.max_tokens or options.answer_max_tokens

        def count(text: str) -> int:
            return self._counter.count_text(text, info.tokenizer_model)

        conversation = None
        turns = request.history or []
        summary, summary_through = None, 0
        if request.conversation_id is not None:
            conversation = await self._conversations.open(
                principal.tenant_id, request.conversation_id, collections[0].id
            )
            turns = conversation.turns
            summary, summary_through = conversation.summary, conversation.summary_through
        system = system_prompt(self._marker, request.instructions)
        system_tokens = count(system) + 4
        question_tokens = count(f"Question: {request.question}") + 4
        available = window - answer_tokens - system_tokens - question_tokens - FRAMING_TOKENS
        if available < 64:
            raise InvalidRequest(
                f"The question leaves no room for sources in the {window}-token window of "
                f"`{info.name}`; shorten it.",
                param="question",
            )
        summarise = None if info.local else self._summariser(info.name, call)
        plan = await plan_history(
            summary,
            summary_through,
            turns,
            int(available * options.history_share),
            count,
            keep_turns=options.keep_turns,
            summarise=summarise,
        )
        context_budget = min(options.max_context_tokens, available - plan.tokens)
        wanted = SearchRequest(
            request.question, request.top_k or options.top_k, request.mode, request.filter
        )
        with span(self._tracer, "propylon.retrieve", lambda: _search_attributes(wanted)) as found:
            hits = await self._search.search_collections(principal, collections, wanted)
            if found.is_recording():
                found.set_attributes(_hit_attributes(hits))
        threshold = options.exclude_risk_at
        risky = [h for h in hits if threshold is not None and (h.risk_score or 0.0) >= threshold]
        left_out = {h.chunk_id for h in risky}
        hits = [h for h in hits if h.chunk_id not in left_out]
        passages = merge_neighbours(hits)
        await self._fill_text(passages)
        marker = self._marker

        def render(passage: Passage, number: int) -> str:
            return source_block(fence_one(number, passage, marker))

        chosen = fit(passages, context_budget, count, render).passages
        sources = fence(chosen, marker)
        messages = self._messages(system, plan, sources, request.question)
        # The plan counts parts; the final check counts the messages as the model will.
        limit = window - answer_tokens
        prompt_tokens = self._counter.count_messages(messages, info.tokenizer_model)
        while prompt_tokens > limit and sources:
            sources = sources[:-1]
            messages = self._messages(system, plan, sources, request.question)
            prompt_tokens = self._counter.count_messages(messages, info.tokenizer_model)
        context_tokens = sum(count(source_block(s)) + 2 for s in sources)
        usage = {
            "context_window": window,
            "prompt_tokens_planned": prompt_tokens,
            "system_tokens": system_tokens,
            "history_tokens": plan.tokens,
            "context_tokens": context_tokens,
            "question_tokens": question_tokens,
            "reserved_for_answer": answer_tokens,
            "excluded_risky_chunks": [h.chunk_id for h in risky],
            "history": {
                "verbatim_turns": len(plan.verbatim),
                "compacted_turns": plan.compacted_turns,
                "compaction": plan.summary_kind if plan.summary else None,
            },
        }
        body: JSONObject = {
            "model": info.name,
            "messages": messages,
            "max_tokens": answer_tokens,
        }
        return Prepared(body, sources, plan, conversation, request.question, usage)

    async def stream(
        self,
        principal: Principal,
        request: AnswerRequest,
        call: CallInfo | None = None,
        *,
        stream_options: JSONObject | None = None,
    ) -> tuple[Prepared, ChatStream]:
        # The root span covers retrieval and the stream's start; the model's span, its
        # child, ends with the stream.
        with self._root(principal, request):
            prepared = await self.prepare(principal, request, call)
            body = dict(prepared.request, stream=True)
            if stream_options is not None:
                body["stream_options"] = stream_options
            return prepared, await self._chat.stream(body, call)

    @contextmanager
    def _root(self, principal: Principal, request: AnswerRequest) -> Iterator[None]:
        """The answer's span: the trace of a ``rag/`` request, named after the HTTP request
        it serves (its model call, guard and retrieval hang under it)."""
        with span(
            self._tracer,
            "rag.answer",
            lambda: {"propylon.rag.collection": request.collection, "gen_ai.operation.name": "rag"},
        ) as root:
            current = current_request.get()
            if current is not None:
                mark_root(root, principal.tenant_id, f"request:{current.request_id}")
            yield

    async def forget(self, tenant_id: str, conversation_id: str) -> None:
        await self._conversations.delete(tenant_id, conversation_id)

    async def remember(
        self, prepared: Prepared, content: str, citations: list[dict[str, Any]]
    ) -> None:
        if prepared.conversation is not None:
            await self._conversations.record(
                prepared.conversation, prepared.question, content, citations, prepared.plan
            )

    def _messages(
        self, system: str, plan: HistoryPlan, sources: list[FencedSource], question: str
    ) -> list[JSONObject]:
        return [
            {"role": "system", "content": system},
            *plan.messages(),
            {"role": "user", "content": user_message(sources, defuse(question))},
        ]

    def _summariser(self, model: str, call: CallInfo | None) -> Callable[[str, int], Any]:
        async def summarise(text: str, max_tokens: int) -> str:
            reply = await self._chat.complete(
                {
                    "model": model,
                    "messages": [
                        {
                            "role": "system",
                            "content": "Summarise this conversation in a few sentences, "
                            "keeping names, numbers and decisions. Reply with the summary only.",
                        },
                        {"role": "user", "content": text},
                    ],
                    "max_tokens": max_tokens,
                },
                CallInfo(
                    principal=call.principal if call else None,
                    endpoint="rag",
                    origin="internal",
                    parent_id=call.request_id if call else None,
                ),
            )
            message = (reply.get("choices") or [{}])[0].get("message") or {}
            return str(message.get("content") or "")

        return summarise

    async def _fill_text(self, passages: list[Passage]) -> None:
        """Each passage's text from ``documents.text`` (merged passages span several chunks)."""
        if not passages:
            return
        async with self._database.connection() as conn:
            cur = await conn.execute(
                QUERIES["document_spans"],
                {
                    "document_ids": [p.document_id for p in passages],
                    "starts": [p.char_start for p in passages],
                    "ends": [p.char_end for p in passages],
                },
            )
            for row in await cur.fetchall():
                if row["text"] is not None:
                    passages[int(row["i"]) - 1].text = row["text"]


def _search_attributes(wanted: SearchRequest) -> dict[str, Any]:
    return {"propylon.retrieval.top_k": wanted.top_k, "propylon.retrieval.mode": wanted.mode}


def _hit_attributes(hits: list[SearchHit]) -> dict[str, Any]:
    """What the waterfall shows of a retrieval: each chunk found and its score, best first."""
    return {
        "propylon.retrieval.hits": len(hits),
        "propylon.retrieval.chunk_ids": [h.chunk_id for h in hits],
        "propylon.retrieval.scores": [float(h.score) for h in hits],
        "propylon.retrieval.document_ids": [h.document_id for h in hits],
    }


def _citation_attributes(citations: list[dict[str, Any]]) -> dict[str, Any]:
    """The citations checked against the sources: how many, and the chunks they point at."""
    return {
        "propylon.citations": len(citations),
        "propylon.citations.chunk_ids": [
            c["chunk_id"] for c in citations if isinstance(c.get("chunk_id"), int)
        ],
    }


def map_citations(
    sources: list[FencedSource], content: str, raw: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Citations as document offsets: quoted sentences first, then bare ``[N]`` markers."""
    out: list[dict[str, Any]] = []
    quoted: set[int] = set()
    for item in raw:
        number = item.get("source")
        if not isinstance(number, int) or not 1 <= number <= len(sources):
            continue
        mapped = map_citation(sources[number - 1], str(item.get("text", "")), item.get("start"))
        if mapped is not None:
            out.append(mapped)
            quoted.add(number)
    for match in _MARKER.finditer(content):
        number = int(match.group(1))
        if 1 <= number <= len(sources) and number not in quoted:
            quoted.add(number)
            source = sources[number - 1]
            passage = source.passage
            out.append(_citation(number, passage, passage.char_start, passage.char_end, None))
    return out


def map_citation(source: FencedSource, quote: str, start: Any) -> dict[str, Any] | None:
    """A quote from ``source`` (offset ``start`` into its stripped text) as document offsets."""
    passage = source.passage
    text = passage.text
    at = -1
    if source.verbatim and isinstance(start, int):
        lead = len(source.body) - len(source.body.lstrip())
        if text[lead + start : lead + start + len(quote)] == quote:
            at = lead + start
    if at < 0:
        quote = unmark(quote)  # a model may quote datamarked text as it saw it
        at = text.find(quote) if quote else -1
    if at < 0:
        return None
    begin = passage.char_start + at
    return _citation(source.number, passage, begin, begin + len(quote), quote)


def _citation(
    number: int, passage: Passage, start: int, end: int, quote: str | None
) -> dict[str, Any]:
    chunk = passage.chunk_at(start) or passage.chunks[0]
    return {
        "number": number,
        "quote": quote,
        "document_id": passage.document_id,
        "collection_id": passage.collection_id,
        "external_id": passage.external_id,
        "filename": passage.filename,
        "chunk_id": chunk.chunk_id,
        "chunk_ids": passage.chunk_ids,
        "start": start,
        "end": end,
        "page": chunk.page_at(start),
        "location": chunk.location,
        "heading_path": chunk.heading_path,
    }


def _source_json(source: FencedSource) -> dict[str, Any]:
    passage = source.passage
    return {
        "number": source.number,
        "document_id": passage.document_id,
        "collection_id": passage.collection_id,
        "external_id": passage.external_id,
        "filename": passage.filename,
        "chunk_ids": passage.chunk_ids,
        "start": passage.char_start,
        "end": passage.char_end,
        "page": passage.page,
        "score": passage.score,
        "risk_score": max(
            (c.risk_score for c in passage.chunks if c.risk_score is not None), default=None
        ),
    }


async def relay(
    prepared: Prepared,
    stream: ChatStream,
    answerer: Answerer,
    public_model: str,
) -> AsyncGenerator[JSONObject, None]:
    """The model's chunks under ``public_model``, with the mapped citations (and the token
    breakdown) on the chunk that carries ``finish_reason``; the exchange is remembered once
    the stream ends."""
    content: list[str] = []
    raw: list[dict[str, Any]] = []
    try:
        async for chunk in stream:
            chunk = dict(chunk)
            chunk["model"] = public_model
            for choice in chunk.get("choices") or []:
                delta = choice.get("delta") or {}
                if isinstance(delta.get("content"), str):
                    content.append(delta["content"])
            extension = chunk.get("propylon")
            if isinstance(extension, dict):
                raw += extension.get("citations") or []
            finished = any(c.get("finish_reason") for c in chunk.get("choices") or [])
            if finished:
                text = "".join(content)
                chunk["propylon"] = {
                    "citations": map_citations(prepared.sources, text, raw),
                    "sources": [_source_json(s) for s in prepared.sources],
                    "conversation_id": prepared.conversation.id if prepared.conversation else None,
                    "rag_usage": prepared.usage,
                }
            yield chunk
    finally:
        await stream.aclose()
    text = "".join(content)
    await answerer.remember(prepared, text, map_citations(prepared.sources, text, raw))
