"""The seams between the gateway and the models it reaches.

Requests and responses travel as OpenAI-shaped JSON objects (plain dicts parsed once from the
wire), so a pass-through to an OpenAI-compatible upstream costs no model round trip. Adapters
for other wire formats (Anthropic) translate to and from this shape at their edge.

Contract shared by every ``ChatModel``:

* ``complete(request)`` returns one ``chat.completion`` object.
* ``stream(request)`` is awaited until the upstream has accepted the request *and* produced its
  first chunk; every failure up to that point is raised from the ``await``, so callers can
  retry or fall back with nothing sent to their client yet. The returned ``ChatStream`` yields
  ``chat.completion.chunk`` objects, the first one included. A failure after that is raised from
  iteration as ``UpstreamStreamInterrupted``. Whoever awaited ``stream`` must ``aclose()`` the
  stream (or exhaust it); closing releases the upstream connection.
* Errors are ``propylon.errors`` classes only; transport exceptions never cross this seam.

The gateway itself is a ``ChatModel`` whose ``request["model"]`` is a public model name, so
RAG and background runs call models through it and get routing, retries and fallback for free.
The layers around the gateway (limits, cache, guard, request log) are ``ChatService`` wrappers:
each satisfies the same protocol as the thing it wraps.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from propylon.gateway.call import CallInfo

JSONObject = dict[str, Any]


class ChatStream(Protocol):
    """An open stream of ``chat.completion.chunk`` objects."""

    def __aiter__(self) -> AsyncIterator[JSONObject]: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class ChatModel(Protocol):
    """Something that answers OpenAI-shaped chat requests."""

    async def complete(self, request: JSONObject) -> JSONObject: ...

    async def stream(self, request: JSONObject) -> ChatStream: ...


@runtime_checkable
class TextCompletionModel(Protocol):
    """A deployment that also has OpenAI's legacy ``/v1/completions``.

    Takes the chat request that stands for a legacy one
    (``providers.text_completions.chat_request``) and answers in chat's shape, with the same
    contract as ``ChatModel``; the gateway calls these when the call's ``api`` is
    ``completions``, and only on deployments that have them.
    """

    async def complete_text(self, request: JSONObject) -> JSONObject: ...

    async def stream_text(self, request: JSONObject) -> ChatStream: ...


@runtime_checkable
class NativeModel(Protocol):
    """A deployment that speaks some client APIs natively (passthrough).

    ``native_apis`` names them (``messages``: Anthropic's; ``responses``: OpenAI's).
    ``complete_native(api, body)`` sends the client's body as it came (``model`` replaced)
    and answers with the ``chat.completion`` standing for the reply (for limits, cache,
    guard and the request log), the reply itself kept in ``["propylon"]["native"]``
    (``native_answer``) so the API's endpoint returns it unchanged: fields chat cannot carry
    (``top_k``, thinking, ``cache_control``, ``reasoning``…) survive. The gateway calls it when
    the call's ``api`` is one of ``native_apis`` and the request carries the client's body
    (``native_body``); other deployments of the model get the translated chat request.

    ``stream_native(api, body)`` is its streamed twin, with ``ChatModel.stream``'s contract:
    one ``chat.completion.chunk`` per upstream event, each carrying the event itself
    (``native_answer``), so the layers read usage, text and tool calls as on any stream
    (events chat has no word for ride on chunks without choices) and the endpoint relays
    the upstream's own events.
    """

    native_apis: frozenset[str]

    async def complete_native(self, api: str, body: JSONObject) -> JSONObject: ...

    async def stream_native(self, api: str, body: JSONObject) -> ChatStream: ...


NATIVE = "native"  # the key under a request's or answer's ``propylon`` extension


def native_body(request: JSONObject) -> JSONObject | None:
    """The client's own body a translated request carries for passthrough, if any."""
    extension = request.get("propylon")
    native = extension.get(NATIVE) if isinstance(extension, dict) else None
    return native if isinstance(native, dict) else None


def with_native_body(request: JSONObject, body: JSONObject) -> JSONObject:
    """``request`` carrying the client's own ``body`` (without ``stream`` and Propylon's
    extension) for the deployments that take it as it is (passthrough)."""
    native = {k: v for k, v in body.items() if k not in ("stream", "propylon")}
    request["propylon"] = {**(request.get("propylon") or {}), NATIVE: native}
    return request


def upstream_body(body: JSONObject, model: str, *, stream: bool) -> JSONObject:
    """The client's ``body`` as a passthrough sends it to a deployment: the deployment's
    ``model``, no Propylon extension, ``stream`` only when streaming."""
    native = {k: v for k, v in body.items() if k not in ("propylon", "stream")}
    native["model"] = model
    if stream:
        native["stream"] = True
    return native


def native_answer(completion: JSONObject) -> JSONObject | None:
    """The upstream's own answer a passthrough completion carries (or, on a passthrough
    stream's chunk, the upstream's event), if any."""
    return native_body(completion)


@dataclass(slots=True)
class Embeddings:
    """Vectors for a batch of texts, in input order, and the tokens the provider counted
    (None: an upstream gave no count, or an insane one; the gateway estimates it)."""

    vectors: list[list[float]]
    prompt_tokens: int | None
    model: str = ""
    extra: JSONObject = field(default_factory=dict)


@runtime_checkable
class EmbeddingModel(Protocol):
    """Something that turns texts into vectors.

    ``embed`` receives at least one text and returns one vector per text, in order.
    ``request`` carries the rest of the OpenAI embeddings body (``dimensions``, ``user``…)
    for adapters that pass it on; implementations ignore what they do not support.
    """

    async def embed(self, texts: list[str], request: JSONObject | None = None) -> Embeddings: ...


@dataclass(slots=True)
class Ranking:
    """Documents ordered by relevance to a query: ``(index in the request, relevance score)``,
    best first (at most ``top_n`` of them when the request set it), and the tokens counted."""

    results: list[tuple[int, float]]
    tokens: int
    model: str = ""


@runtime_checkable
class RerankModel(Protocol):
    """Something that orders documents by relevance to a query (Cohere/Jina/vLLM ``/rerank``).

    ``rerank`` receives a non-empty query and at least one document; ``request`` carries the
    rest of the body (``top_n``…). Scores are comparable within one call only.
    """

    async def rerank(
        self, query: str, documents: list[str], request: JSONObject | None = None
    ) -> Ranking: ...


class ChatService(Protocol):
    """A ``ChatModel`` that also takes the call's ``CallInfo``: the gateway and every layer
    wrapped around it (limits, cache, guard, request log). Each layer reads the principal from
    ``call`` and reports what it did to it (``CallInfo.report``), then delegates to the layer
    it wraps.
    Satisfies ``ChatModel`` too, since ``call`` is optional."""

    async def complete(self, request: JSONObject, call: CallInfo | None = None) -> JSONObject: ...

    async def stream(self, request: JSONObject, call: CallInfo | None = None) -> ChatStream: ...


class EmbeddingService(Protocol):
    """An ``EmbeddingModel`` that also takes the call's ``CallInfo`` (see ``ChatService``)."""

    async def embed(
        self, texts: list[str], request: JSONObject | None = None, call: CallInfo | None = None
    ) -> Embeddings: ...


class ModelEmbeddings:
    """An ``EmbeddingModel`` called directly, as an ``EmbeddingService`` (no gateway: a local
    model the process runs for itself, e.g. the guard's; wrap it to record its calls)."""

    def __init__(self, model: EmbeddingModel) -> None:
        self._model = model

    async def embed(
        self, texts: list[str], request: JSONObject | None = None, call: CallInfo | None = None
    ) -> Embeddings:
        return await self._model.embed(texts, request)


class RerankService(Protocol):
    """A ``RerankModel`` that also takes the call's ``CallInfo`` (see ``ChatService``)."""

    async def rerank(
        self,
        query: str,
        documents: list[str],
        request: JSONObject | None = None,
        call: CallInfo | None = None,
    ) -> Ranking: ...


class ModelRanking:
    """A ``RerankModel`` called directly, as a ``RerankService`` (no gateway; see
    ``ModelEmbeddings``)."""

    def __init__(self, model: RerankModel) -> None:
        self._model = model

    async def rerank(
        self,
        query: str,
        documents: list[str],
        request: JSONObject | None = None,
        call: CallInfo | None = None,
    ) -> Ranking:
        return await self._model.rerank(query, documents, request)
