"""A stream of ``chat.completion.chunk`` objects, told as the Responses API's typed events.

The order is OpenAI's: ``response.created``, ``response.in_progress``, then per output item
``response.output_item.added`` → deltas (``response.output_text.delta`` inside a
``content_part``, or ``response.function_call_arguments.delta``) → a RAG answer's citations
as ``response.output_text.annotation.added`` (``file_citation``) → the matching ``.done``
events → ``response.output_item.done``, and last ``response.completed`` with the whole
response. A failure after the first event ends the stream with ``response.failed`` (the
response with ``status: failed`` and its ``error``), never with a silent stop.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from propylon.errors import PropylonError
from propylon.gateway.chunk_parts import chunk_parts, native_events
from propylon.gateway.citations import extension_citations, file_citations
from propylon.gateway.protocol import ChatStream, JSONObject, native_answer
from propylon.responses.translation import (
    as_sent,
    function_call_item,
    item_status,
    message_item,
    new_id,
    response_object,
)

Finished = Callable[[JSONObject], Awaitable[None]]
"""Called with the final response before ``response.completed`` is sent (to store it)."""


@dataclass(slots=True)
class _Item:
    item: JSONObject
    index: int
    text: list[str] = field(default_factory=list)


@dataclass(slots=True)
class ResponseEvents:
    """The event stream of one response; ``events(stream)`` yields the event objects."""

    body: JSONObject
    response_id: str
    created_at: int = field(default_factory=lambda: int(time.time()))
    sequence: int = 0
    items: list[_Item] = field(default_factory=list)
    calls: dict[int, _Item] = field(default_factory=dict)
    message: _Item | None = None
    model: object = None
    finish: str | None = None
    usage: dict[str, Any] | None = None
    citations: list[JSONObject] = field(default_factory=list)  # a RAG answer's, at its end

    def _event(self, kind: str, **fields: Any) -> JSONObject:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def _response(self, status: str, error: JSONObject | None = None) -> JSONObject:
        return response_object(
            self.body,
            response_id=self.response_id,
            created_at=self.created_at,
            status=status,
            output=[item.item for item in self.items] if status != "in_progress" else [],
            model=self.model,
            finish=self.finish,
            usage=self.usage,
            error=error,
        )

    async def events(
        self, stream: ChatStream, finished: Finished
    ) -> AsyncGenerator[JSONObject, None]:
        """Every event of the response; closes ``stream`` whatever happens. A passthrough's
        stream (a Responses deployment's own events on its chunks) is relayed as it came,
        with the public model name in the responses it carries."""
        chunks = aiter(stream)
        relayed: _Relay | None = None
        try:
            first = await anext(chunks, None)
            if first is not None and native_answer(first) is not None:
                relayed = _Relay(self.body, self.response_id, finished)
                async for event in relayed.events(first, chunks):
                    yield event
                return
            yield self._event("response.created", response=self._response("in_progress"))
            yield self._event("response.in_progress", response=self._response("in_progress"))
            if first is not None:
                for event in self._translate(first):
                    yield event
            async for chunk in chunks:
                for event in self._translate(chunk):
                    yield event
            for event in self._close_items():
                yield event
            response = self._response("completed")  # `incomplete` when the answer was cut
            await finished(response)
            yield self._event(f"response.{response['status']}", response=response)
        except PropylonError as exc:
            error = {"code": exc.code or "server_error", "message": exc.message}
            if relayed is not None:
                yield relayed.failed(error)
            else:
                yield self._event("response.failed", response=self._response("failed", error))
        finally:
            await stream.aclose()

    def _translate(self, chunk: JSONObject) -> list[JSONObject]:
        parts = chunk_parts(chunk)
        self.model = self.model if self.model is not None else parts.model
        self.usage = parts.usage or self.usage
        self.finish = parts.finish or self.finish
        self.citations = extension_citations(chunk) or self.citations
        out: list[JSONObject] = self._text(parts.text) if parts.text else []
        for call in parts.tool_calls:
            out.extend(self._call(call))
        return out

    def _open(self, item: JSONObject) -> tuple[_Item, JSONObject]:
        opened = _Item(item, len(self.items))
        self.items.append(opened)
        event = self._event("response.output_item.added", output_index=opened.index, item=item)
        return opened, event

    def _text(self, text: str) -> list[JSONObject]:
        out: list[JSONObject] = []
        message = self.message
        if message is None:
            message, added = self._open(message_item(new_id("msg"), "", status="in_progress"))
            self.message = message
            part = {"type": "output_text", "text": "", "annotations": []}
            out.append(added)
            out.append(self._part_event("response.content_part.added", message, part))
        message.text.append(text)
        out.append(
            self._event(
                "response.output_text.delta",
                item_id=message.item["id"],
                output_index=message.index,
                content_index=0,
                delta=text,
                logprobs=[],
            )
        )
        return out

    def _part_event(self, kind: str, message: _Item, part: JSONObject) -> JSONObject:
        return self._event(
            kind,
            item_id=message.item["id"],
            output_index=message.index,
            content_index=0,
            part=part,
        )

    def _call(self, delta: JSONObject) -> list[JSONObject]:
        index = delta.get("index", 0)
        function = delta.get("function") if isinstance(delta.get("function"), dict) else {}
        assert isinstance(function, dict)
        out: list[JSONObject] = []
        call = self.calls.get(index) if isinstance(index, int) else None
        if call is None:
            item = function_call_item(
                new_id("fc"),
                str(delta.get("id") or new_id("call")),
                str(function.get("name") or ""),
                "",
                status="in_progress",
            )
            call, added = self._open(item)
            self.calls[index if isinstance(index, int) else len(self.calls)] = call
            out.append(added)
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            call.text.append(arguments)
            out.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=call.item["id"],
                    output_index=call.index,
                    delta=arguments,
                )
            )
        return out

    def _close_items(self) -> list[JSONObject]:
        out: list[JSONObject] = []
        for opened in self.items:
            item, text = opened.item, "".join(opened.text)
            if item["type"] == "message":
                annotations = file_citations(self.citations, text)
                for number, annotation in enumerate(annotations):
                    out.append(
                        self._event(
                            "response.output_text.annotation.added",
                            item_id=item["id"],
                            output_index=opened.index,
                            content_index=0,
                            annotation_index=number,
                            annotation=annotation,
                        )
                    )
                part = {"type": "output_text", "text": text, "annotations": annotations}
                out.append(
                    self._event(
                        "response.output_text.done",
                        item_id=item["id"],
                        output_index=opened.index,
                        content_index=0,
                        text=text,
                        logprobs=[],
                    )
                )
                out.append(self._part_event("response.content_part.done", opened, part))
                opened.item = message_item(
                    item["id"], text, item_status(self.finish), annotations=annotations
                )
            else:
                out.append(
                    self._event(
                        "response.function_call_arguments.done",
                        item_id=item["id"],
                        output_index=opened.index,
                        name=item["name"],
                        arguments=text,
                    )
                )
                opened.item = function_call_item(item["id"], item["call_id"], item["name"], text)
            out.append(
                self._event(
                    "response.output_item.done", output_index=opened.index, item=opened.item
                )
            )
        return out


@dataclass(slots=True)
class _Relay:
    """A passthrough's events, relayed: Propylon's id, the public ``model`` and the client's
    own ``instructions`` (without the guard's canary) in every response an event carries, the
    final one handed to ``finished`` (to store it) before it is sent."""

    body: JSONObject
    response_id: str
    finished: Finished
    response: JSONObject = field(default_factory=dict)  # the latest the upstream sent
    sequence: int = 0

    async def events(
        self, first: JSONObject, chunks: AsyncIterator[JSONObject]
    ) -> AsyncIterator[JSONObject]:
        async for event in native_events(first, chunks):
            event = self._renamed(event)
            if event.get("type") in ("response.completed", "response.incomplete"):
                await self.finished(self.response)
            yield event

    def _renamed(self, event: JSONObject) -> JSONObject:
        sequence = event.get("sequence_number")
        if isinstance(sequence, int):
            self.sequence = sequence + 1
        response = event.get("response")
        if not isinstance(response, dict):
            return event
        self.response = as_sent(response, self.body, self.response_id)
        return {**event, "response": self.response}

    def failed(self, error: JSONObject) -> JSONObject:
        """``response.failed`` for a stream broken after its first event."""
        response = {**self.response, "status": "failed", "error": error}
        return {"type": "response.failed", "sequence_number": self.sequence, "response": response}
