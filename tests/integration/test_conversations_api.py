"""OpenAI's Conversations API with the official SDK, and `conversation` on `/v1/responses`."""

from __future__ import annotations

import openai
import pytest

from propylon.testing import FakeUpstream
from tests.support.servers import AppServer, openai_sdk


async def test_responses_in_a_conversation_see_its_items_and_add_theirs(
    sdk: openai.AsyncOpenAI, upstream: FakeUpstream
) -> None:
    conversation = await sdk.conversations.create(
        items=[{"type": "message", "role": "user", "content": "My name is Ada."}],
        metadata={"topic": "names"},
    )
    assert conversation.id.startswith("conv_") and conversation.metadata == {"topic": "names"}

    first = await sdk.responses.create(
        model="gpt-test", input="What is my name?", conversation=conversation.id
    )
    sent = upstream.last_request("/v1/chat/completions")
    assert sent is not None
    assert [m["content"] for m in sent.body["messages"]] == ["My name is Ada.", "What is my name?"]
    assert first.conversation is not None and first.conversation.id == conversation.id

    async with sdk.responses.stream(
        model="gpt-test", input="And again?", conversation={"id": conversation.id}
    ) as stream:
        async for _ in stream:
            pass
        second = await stream.get_final_response()
    sent = upstream.last_request("/v1/chat/completions")
    assert sent is not None
    contents = [m["content"] for m in sent.body["messages"]]
    assert contents[:2] == ["My name is Ada.", "What is my name?"]
    assert contents[2] == first.output_text and contents[-1] == "And again?"

    items = [item async for item in sdk.conversations.items.list(conversation.id, order="asc")]
    assert [(i.type, getattr(i, "role", None)) for i in items] == [
        ("message", "user"),
        ("message", "user"),
        ("message", "assistant"),
        ("message", "user"),
        ("message", "assistant"),
    ]
    last = items[-1].model_dump()
    assert last["content"][0]["text"] == second.output_text
    ids = [str(i.id) for i in items]
    assert len(set(ids)) == 5
    newest = await sdk.conversations.items.list(conversation.id, limit=2)
    assert [i.id for i in newest.data] == [ids[4], ids[3]] and newest.has_more
    after = await sdk.conversations.items.list(conversation.id, limit=2, after=ids[3])
    assert [i.id for i in after.data] == [ids[2], ids[1]]


async def test_items_are_added_read_and_deleted(sdk: openai.AsyncOpenAI) -> None:
    conversation = await sdk.conversations.create()
    added = await sdk.conversations.items.create(
        conversation.id,
        items=[
            {"type": "message", "role": "user", "content": "Hello"},
            {"type": "message", "role": "assistant", "content": "Hi there"},
        ],
    )
    first, second = (str(item.id) for item in added.data)
    assert first.startswith("msg_") and first != second
    read = await sdk.conversations.items.retrieve(first, conversation_id=conversation.id)
    assert read.id == first
    left = await sdk.conversations.items.delete(first, conversation_id=conversation.id)
    assert left.id == conversation.id
    remaining = [i.id async for i in sdk.conversations.items.list(conversation.id)]
    assert remaining == [second]
    with pytest.raises(openai.NotFoundError):
        await sdk.conversations.items.retrieve(first, conversation_id=conversation.id)

    updated = await sdk.conversations.update(conversation.id, metadata={"stage": "2"})
    assert updated.metadata == {"stage": "2"}
    assert (await sdk.conversations.retrieve(conversation.id)).metadata == {"stage": "2"}
    deleted = await sdk.conversations.delete(conversation.id)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError):
        await sdk.conversations.retrieve(conversation.id)
    with pytest.raises(openai.NotFoundError) as gone:
        await sdk.responses.create(model="gpt-test", input="hi", conversation=conversation.id)
    assert gone.value.body["param"] == "conversation"  # type: ignore[index]


async def test_what_a_conversation_cannot_take_is_a_400_naming_it(
    sdk: openai.AsyncOpenAI, gateway: AppServer
) -> None:
    conversation = await sdk.conversations.create()
    first = await sdk.responses.create(model="gpt-test", input="hi")
    with pytest.raises(openai.BadRequestError) as both:
        await sdk.responses.create(
            model="gpt-test",
            input="hi",
            conversation=conversation.id,
            previous_response_id=first.id,
        )
    assert both.value.body["param"] == "conversation"  # type: ignore[index]
    for items, param in (
        ([{"type": "message", "role": "robot", "content": "x"}], "items[0].role"),
        ([{"type": "web_search_call"}], "items[0].type"),
        ([{"type": "message", "role": "user", "content": "x"}] * 21, "items"),
    ):
        with pytest.raises(openai.BadRequestError) as refused:
            await sdk.conversations.items.create(conversation.id, items=items)  # type: ignore[arg-type]
        assert refused.value.body["param"] == param, refused.value.body  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as metadata:
        await sdk.conversations.create(metadata={"k": "v" * 513})
    assert metadata.value.body["param"] == "metadata"  # type: ignore[index]
    with pytest.raises(openai.BadRequestError) as order:
        await sdk.conversations.items.list(conversation.id, order="sideways")  # type: ignore[arg-type]
    assert order.value.body["param"] == "order"  # type: ignore[index]

    other_key, _ = await gateway.app.state.services.access.create_key("another-tenant")
    async with openai_sdk(gateway, key=other_key) as other:
        with pytest.raises(openai.NotFoundError):
            await other.conversations.retrieve(conversation.id)
        with pytest.raises(openai.NotFoundError):
            await other.responses.create(model="gpt-test", input="hi", conversation=conversation.id)
