"""The Responses API (``POST /v1/responses``), answered by the chat request path.

A request is translated to a chat request (``translation``), sent through the same layers as
``/v1/chat/completions`` (keys and scopes, limits, cache, guard, request log, routing,
retries, fallback), and the answer translated back. With ``store`` (the default) the response
and its conversation are kept per tenant, so ``previous_response_id`` continues it; a request
naming a ``conversation`` (``conversations.py``) continues that one and adds its items to it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncGenerator

from propylon.errors import InvalidRequest, NotFound
from propylon.gateway.call import CallInfo
from propylon.gateway.protocol import ChatService, JSONObject, native_answer, with_native_body
from propylon.responses.conversations import (
    ResponseConversations,
    conversation_ref,
    stored,
)
from propylon.responses.events import ResponseEvents
from propylon.responses.store import ResponseStore
from propylon.responses.translation import (
    as_sent,
    assistant_turn,
    chat_request,
    conversation,
    new_id,
    output_items,
    response_object,
)

log = logging.getLogger(__name__)


class ResponsesService:
    """Create, get and delete responses for the caller's tenant."""

    def __init__(
        self, chat: ChatService, store: ResponseStore, conversations: ResponseConversations
    ) -> None:
        self._chat = chat
        self._store = store
        self.conversations = conversations

    async def create(self, body: JSONObject, call: CallInfo) -> JSONObject:
        """A non-streamed response."""
        request, turns = await self._prepare(body, call)
        call.response_id = response_id = new_id("resp")
        completion = await self._chat.complete(request, call)
        passed = native_answer(completion)
        if passed is not None:  # a deployment that speaks Responses answered in it
            response = as_sent(passed, body, response_id)
            await self._keep(body, call, turns, response)
            return response
        output, finish = output_items(completion)
        response = response_object(
            body,
            response_id=response_id,
            created_at=int(time.time()),
            status="completed",
            output=output,
            model=completion.get("model"),
            finish=finish,
            usage=completion.get("usage") if isinstance(completion.get("usage"), dict) else None,
        )
        if isinstance(completion.get("propylon"), dict):
            response["propylon"] = completion["propylon"]  # e.g. a RAG answer's citations
        await self._keep(body, call, turns, response)
        return response

    async def stream(self, body: JSONObject, call: CallInfo) -> AsyncGenerator[JSONObject, None]:
        """The typed events of a streamed response: a Responses deployment's own
        (passthrough), or told from chat chunks. Failures before the first chunk are raised
        here (nothing has been sent yet); later ones end the stream with ``response.failed``."""
        request, turns = await self._prepare(body, call)
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
        call.response_id = response_id = new_id("resp")
        stream = await self._chat.stream(request, call)

        async def finished(response: JSONObject) -> None:
            await self._keep(body, call, turns, response)

        return ResponseEvents(body, response_id).events(stream, finished)

    async def get(self, tenant_id: str, response_id: str) -> JSONObject:
        return (await self._store.get(tenant_id, response_id)).response

    async def delete(self, tenant_id: str, response_id: str) -> JSONObject:
        await self._store.delete(tenant_id, response_id)
        return {"id": response_id, "object": "response.deleted", "deleted": True}

    async def _prepare(
        self, body: JSONObject, call: CallInfo
    ) -> tuple[JSONObject, list[JSONObject]]:
        """The chat request, and the conversation it stands for (to store afterwards)."""
        turns = conversation(body)
        previous = body.get("previous_response_id")
        named = conversation_ref(body.get("conversation"))
        history: list[JSONObject] = []
        if named is not None:
            if previous is not None:
                raise InvalidRequest(
                    "Continue either a `conversation` or a `previous_response_id`, not both.",
                    param="conversation",
                )
            history = await self.conversations.history(_tenant(call), named)
        if previous is not None:
            if not isinstance(previous, str) or not previous:
                raise InvalidRequest(
                    "`previous_response_id` must be a response id.", param="previous_response_id"
                )
            try:
                history = (await self._store.get(_tenant(call), previous)).conversation
            except NotFound as missing:  # named for the field the client set
                raise NotFound(
                    missing.message, param="previous_response_id", code=missing.code
                ) from None
        metadata = body.get("metadata")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidRequest("`metadata` must be an object.", param="metadata")
        request = chat_request(body, history, turns)
        if previous is None and named is None:  # the upstream knows no stored turns
            with_native_body(request, body)  # (see docs/architecture.md)
        return request, [*history, *turns]

    async def _keep(
        self, body: JSONObject, call: CallInfo, turns: list[JSONObject], response: JSONObject
    ) -> None:
        named = conversation_ref(body.get("conversation"))
        if named is not None:  # the conversation's items, whether the response is stored
            items = stored(body.get("input"))  # checked as the request was read
            items += stored(response["output"], keep_ids=True)
            try:
                await self.conversations.append(_tenant(call), named, items)
            except Exception:  # deleted meanwhile, or the database away: the answer stands
                log.warning(
                    "conversation items not stored",
                    exc_info=True,
                    extra={"response": response["id"], "conversation": named},
                )
        if body.get("store") is False:
            return
        answer = assistant_turn(response["output"])
        try:
            await self._store.save(
                _tenant(call), response, [*turns, answer] if answer is not None else turns
            )
        except Exception:
            # The answer is worth more than its copy: it is returned, and continuing from it
            # later gets a clear 404 instead.
            log.warning("response not stored", exc_info=True, extra={"response": response["id"]})


def _tenant(call: CallInfo) -> str:
    assert call.principal is not None, "the HTTP layer authenticates before calling"
    return call.principal.tenant_id
