"""The tools an agent may call, what each may reach, and who may hand it to an agent.

A tool has a name, a description and a JSON Schema the model reads, a risk level, and an
async function. The risk level decides which key may give it to an agent:

* ``read``: reads the tenant's own data (``search``, ``answer``, ``run_chain`` over the
  chains the run's author defined); any key with ``rag``;
* ``network``: reaches beyond Propylon (``http_get``, MCP tools); keys with ``tools:network``.

Every result is text for the model plus data for the run's record; tool results are screened
by the guard like retrieved text before the model reads them (``propylon.runs.agent``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urlsplit

import aiohttp

from propylon.errors import InvalidRequest, PermissionDenied
from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import ChatService
from propylon.principal import Principal
from propylon.rag.search import SearchRequest, SearchService
from propylon.runs.spec import MissingOutput, render
from propylon.runs.steps import STEPS, StepContext

Risk = Literal["read", "network"]
RISK_FEATURE: dict[Risk, str] = {"read": "rag", "network": "tools:network"}
MAX_RESULT_CHARS = 8_000
"""What a model reads of one tool result; the rest is cut with a note saying so."""
HTTP_MAX_BYTES = 256 * 1024
HTTP_TIMEOUT_S = 10.0


class ToolFailed(Exception):
    """A tool could not do what was asked; the model is told why and may try otherwise."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    content: str  # what the model reads
    data: dict[str, Any] = field(default_factory=dict)  # what the run records


@dataclass(slots=True)
class ToolContext:
    """What a tool may use, for one run: the caller's identity and the tenant's reach."""

    principal: Principal
    chat: ChatService
    search: SearchService | None
    http_hosts: frozenset[str]  # hosts (`host` or `host:port`) `http_get` may fetch from
    run_id: str
    steps: StepContext | None = None  # what a chain's steps run with (`run_chain`)
    chains: Mapping[str, list[dict[str, Any]]] = field(default_factory=dict)


ToolFunction = Callable[[ToolContext, dict[str, Any]], Awaitable[ToolResult]]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    risk: Risk
    run: ToolFunction

    def schema(self) -> dict[str, Any]:
        """The tool as a model reads it (OpenAI function format; the gateway translates)."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


def _object(required: Sequence[str], **properties: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required)}


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ToolFailed(f"`{name}` must be a non-empty string.")
    return value


async def _search(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    if ctx.search is None:
        raise ToolFailed("search is not available in this process.")
    top_k = args.get("top_k", 5)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k <= 20:
        raise ToolFailed("`top_k` must be an integer from 1 to 20.")
    collection = _text(args.get("collection"), "collection")
    request = SearchRequest(_text(args.get("query"), "query"), top_k)
    hits = await ctx.search.search(ctx.principal, [collection], request)
    passages = [f"[{n}] (document {h.document_id}) {h.text}" for n, h in enumerate(hits, 1)]
    data = {
        "hits": [
            {"chunk_id": h.chunk_id, "document_id": h.document_id, "score": h.score} for h in hits
        ]
    }
    return ToolResult("\n\n".join(passages) or "No passage matched.", data)


async def _answer(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    request = {
        "model": f"rag/{_text(args.get('collection'), 'collection')}",
        "messages": [{"role": "user", "content": _text(args.get("question"), "question")}],
    }
    call = CallInfo(principal=ctx.principal, endpoint="run")
    response = await ctx.chat.complete(request, call)
    message = (response.get("choices") or [{}])[0].get("message") or {}
    citations = (response.get("propylon") or {}).get("citations") or []
    return ToolResult(str(message.get("content") or ""), {"citations": citations})


async def _http_get(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    url = _text(args.get("url"), "url")
    parts = urlsplit(url)
    host = parts.hostname or ""
    where = f"{host}:{parts.port}" if parts.port else host
    if parts.scheme not in ("http", "https") or not (
        host in ctx.http_hosts or where in ctx.http_hosts
    ):
        raise ToolFailed(f"`{url}` is not on this tenant's allow-list for http_get.")
    timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as http,
            http.get(url, allow_redirects=False) as resp,
        ):
            body = await resp.content.read(HTTP_MAX_BYTES)
            charset = resp.charset or "utf-8"
            status, reason = resp.status, resp.reason or ""
            location = resp.headers.get("Location")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ToolFailed(f"fetching `{url}` failed: {exc or type(exc).__name__}") from None
    try:
        text = body.decode(charset, errors="replace")
    except LookupError:  # a charset Python does not know
        text = body.decode("utf-8", errors="replace")
    if not 200 <= status < 300:  # the model is told, not handed an error page as the answer
        moved = f" (redirect to {location}, not followed)" if location else ""
        text = f"HTTP {status} {reason}{moved}\n\n{text}".rstrip()
    return ToolResult(text, {"status": status, "url": url, "bytes": len(body)})


async def _run_chain(ctx: ToolContext, args: dict[str, Any]) -> ToolResult:
    name = _text(args.get("name"), "name")
    steps = ctx.chains.get(name)
    if steps is None:
        raise ToolFailed(f"there is no chain `{name}`; this run has {sorted(ctx.chains)}.")
    if ctx.steps is None:
        raise ToolFailed("chains are not available in this process.")
    outputs: dict[str, dict[str, Any]] = {"input": {"text": str(args.get("input") or "")}}
    inner = replace(ctx.steps, outputs=outputs)
    for step in steps:
        try:
            params = render(step, outputs)
        except MissingOutput as exc:
            raise ToolFailed(f"the chain `{name}` failed at `{step['name']}`: {exc}") from None
        outputs[step["name"]] = await STEPS[step["kind"]](inner, step["name"], params)
    last = outputs[steps[-1]["name"]]
    text = last.get("text")
    content = text if isinstance(text, str) else str(last)
    return ToolResult(content, {"chain": name, "steps": [step["name"] for step in steps]})


BUILT_IN: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "search",
            "Search one of the user's document collections; returns numbered passages.",
            _object(
                ("collection", "query"),
                collection={"type": "string", "description": "Collection name or id."},
                query={"type": "string"},
                top_k={"type": "integer", "minimum": 1, "maximum": 20},
            ),
            "read",
            _search,
        ),
        Tool(
            "answer",
            "Answer a question from one of the user's collections, with citations.",
            _object(
                ("collection", "question"),
                collection={"type": "string"},
                question={"type": "string"},
            ),
            "read",
            _answer,
        ),
        Tool(
            "run_chain",
            "Run one of this run's named chains of steps on an input; returns its last output.",
            _object(("name",), name={"type": "string"}, input={"type": "string"}),
            "read",
            _run_chain,
        ),
        Tool(
            "http_get",
            "Fetch a web page (only hosts the operator allowed for this tenant).",
            _object(("url",), url={"type": "string", "description": "An http(s) URL."}),
            "network",
            _http_get,
        ),
    )
}


MCP_PREFIX = "mcp:"
"""A tool entry ``mcp:<server>`` offers every tool of that registered MCP server."""


def check_tools(principal: Principal, wanted: Sequence[Mapping[str, Any]]) -> None:
    """Every built-in tool exists and the key may give each tool to an agent (400 or 403
    naming it); MCP servers are looked up by the caller."""
    for index, entry in enumerate(wanted):
        name = entry["name"]
        tool = BUILT_IN.get(name)
        if tool is None and not name.startswith(MCP_PREFIX):
            raise InvalidRequest(
                f"Unknown tool `{name}`; tools are {sorted(BUILT_IN)} and `mcp:<server>`.",
                param=f"tools[{index}]",
                code="unknown_tool",
            )
        risk: Risk = tool.risk if tool is not None else "network"
        feature = RISK_FEATURE[risk]
        if not principal.has_feature(feature):
            raise PermissionDenied(
                f"This key may not give agents the `{name}` tool ({risk} risk): it needs the "
                f"`{feature}` feature.",
                param=f"tools[{index}]",
            )


def clip(text: str) -> str:
    """A tool result cut to what a model should read of it."""
    if len(text) <= MAX_RESULT_CHARS:
        return text
    return text[:MAX_RESULT_CHARS] + f"\n[… {len(text) - MAX_RESULT_CHARS} more characters cut]"
