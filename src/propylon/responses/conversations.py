"""OpenAI's Conversations API: a tenant's conversations, kept as Responses items.

``POST /v1/conversations`` makes one (with up to 20 first items and metadata); its items are
listed, added, read and deleted under ``/v1/conversations/{id}/items``. A ``/v1/responses``
request naming ``conversation`` is answered with the conversation's items before its own
input, and its input and output items are appended once it is answered (the conversation is
locked meanwhile, so two answers add their items one after the other). Items are stored as
the Responses API shows them, each with an id (``msg_…``, ``fc_…``, ``fco_…``); they become
chat turns through the same translation as ``input``.
"""

from __future__ import annotations

from typing import Any

from psycopg.types.json import Jsonb

from propylon.db.database import Database
from propylon.db.named_queries import named_queries
from propylon.errors import InvalidRequest, NotFound
from propylon.gateway.protocol import JSONObject
from propylon.params import int_param, only_fields
from propylon.responses.translation import chat_turns, new_id
from propylon.storable import check_storable, storable_json

MAX_NEW_ITEMS = 20  # OpenAI's bound on the items given at once
MAX_METADATA = 16
_PREFIXES = {"message": "msg", "function_call": "fc", "function_call_output": "fco"}


def _q(name: str) -> Any:
    return named_queries("propylon.responses")[name]


def conversation_ref(value: object) -> str | None:
    """The conversation a Responses body names: ``"conv_…"`` or ``{"id": "conv_…"}``."""
    if value is None:
        return None
    ident = value.get("id") if isinstance(value, dict) else value
    if not isinstance(ident, str) or not ident:
        raise InvalidRequest(
            '`conversation` must be a conversation id or {"id": …}.', param="conversation"
        )
    return ident


class ResponseConversations:
    """The tenant's conversations and their items, in PostgreSQL."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def create(self, tenant_id: str, body: JSONObject) -> JSONObject:
        # `safety_identifier`: OpenAI's abuse monitoring, which has no counterpart here.
        only_fields(body, ("items", "metadata", "safety_identifier"), "")
        metadata = _metadata(body.get("metadata"))
        items = checked(body.get("items") or [])
        ident = new_id("conv")
        async with self._database.connection() as conn:
            cur = await conn.execute(
                _q("insert_conversation"),
                {"id": ident, "tenant_id": tenant_id, "metadata": Jsonb(metadata)},
            )
            row = await cur.fetchone()
            assert row is not None
            await _insert(conn, ident, items)
        return _view(row)

    async def get(self, tenant_id: str, ident: str) -> JSONObject:
        async with self._database.connection() as conn:
            return _view(await _row(conn, "get_conversation", tenant_id, ident))

    async def update(self, tenant_id: str, ident: str, body: JSONObject) -> JSONObject:
        only_fields(body, ("metadata",), "")
        if "metadata" not in body:
            raise InvalidRequest("Send the `metadata` to keep.", param="metadata")
        params = {
            "id": ident,
            "tenant_id": tenant_id,
            "metadata": Jsonb(_metadata(body["metadata"])),
        }
        async with self._database.connection() as conn:
            row = await (await conn.execute(_q("update_conversation"), params)).fetchone()
        if row is None:
            raise _missing(ident)
        return _view(row)

    async def delete(self, tenant_id: str, ident: str) -> JSONObject:
        async with self._database.connection() as conn:
            cur = await conn.execute(
                _q("delete_conversation"), {"id": ident, "tenant_id": tenant_id}
            )
            if await cur.fetchone() is None:
                raise _missing(ident)
        return {"id": ident, "object": "conversation.deleted", "deleted": True}

    async def list_items(self, tenant_id: str, ident: str, query: dict[str, str]) -> JSONObject:
        limit = int_param(query.get("limit", "20"), "limit", 1, 100)
        order = query.get("order", "desc")
        if order not in ("asc", "desc"):
            raise InvalidRequest("`order` must be `asc` or `desc`.", param="order")
        after = query.get("after")
        async with self._database.connection() as conn:
            await _row(conn, "get_conversation", tenant_id, ident)
            place = None if after is None else (await _item(conn, ident, after, "after"))["seq"]
            cur = await conn.execute(
                _q("list_items"),
                {
                    "conversation_id": ident,
                    "after_seq": place,
                    "descending": order == "desc",
                    "limit": limit + 1,
                },
            )
            items = [row["item"] for row in await cur.fetchall()]
        return _page(items[:limit], has_more=len(items) > limit)

    async def add_items(self, tenant_id: str, ident: str, body: JSONObject) -> JSONObject:
        only_fields(body, ("items",), "")
        if not body.get("items"):
            raise InvalidRequest("`items` must be a non-empty array of items.", param="items")
        items = checked(body["items"])
        async with self._database.connection() as conn:
            await _row(conn, "lock_conversation", tenant_id, ident)
            await _insert(conn, ident, items)
        return _page(items, has_more=False)

    async def get_item(self, tenant_id: str, ident: str, item_id: str) -> JSONObject:
        async with self._database.connection() as conn:
            await _row(conn, "get_conversation", tenant_id, ident)
            item: JSONObject = (await _item(conn, ident, item_id))["item"]
            return item

    async def delete_item(self, tenant_id: str, ident: str, item_id: str) -> JSONObject:
        """The conversation, without the item."""
        async with self._database.connection() as conn:
            row = await _row(conn, "lock_conversation", tenant_id, ident)
            cur = await conn.execute(
                _q("delete_item"), {"conversation_id": ident, "item_id": item_id}
            )
            if await cur.fetchone() is None:
                raise NotFound(f"No item `{item_id}` in `{ident}`.", param="item_id")
        return _view(row)

    async def history(self, tenant_id: str, ident: str) -> list[JSONObject]:
        """The conversation's items as the chat turns a response continues."""
        async with self._database.connection() as conn:
            await _row(conn, "get_conversation", tenant_id, ident, param="conversation")
            cur = await conn.execute(_q("all_items"), {"conversation_id": ident})
            items = [row["item"] for row in await cur.fetchall()]
        return chat_turns(items, "items") if items else []

    async def append(self, tenant_id: str, ident: str, items: list[JSONObject]) -> None:
        """A response's input and output items, after the conversation's (404 if it was
        deleted meanwhile)."""
        async with self._database.connection() as conn:
            await _row(conn, "lock_conversation", tenant_id, ident, param="conversation")
            await _insert(conn, ident, items)


def checked(items: object) -> list[JSONObject]:
    """Items a client gives a conversation (``items``: up to 20), checked as ``input`` is,
    as stored."""
    if not isinstance(items, str | list):  # a string: one user message, as for `input`
        raise InvalidRequest("`items` must be an array of items.", param="items")
    if len(items) > MAX_NEW_ITEMS and isinstance(items, list):
        raise InvalidRequest(f"At most {MAX_NEW_ITEMS} items at once.", param="items")
    check_storable(items, "items")
    if items:
        chat_turns(items, "items")
    return stored(items)


def stored(items: object, *, keep_ids: bool = False) -> list[JSONObject]:
    """Responses items (checked already; a string: one user message) as stored: each with
    its type, an id of its own (``keep_ids``: the one it has, for a response's output) and,
    for a message, its content as parts."""
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    assert isinstance(items, list)
    out: list[JSONObject] = []
    for item in items:
        kind = item.get("type", "message")
        if kind not in _PREFIXES:
            continue  # reasoning items: not kept (chat has no word for them)
        kept = {**item, "type": kind}
        ident = item.get("id")
        keep = keep_ids and isinstance(ident, str) and ident
        kept["id"] = ident if keep else new_id(_PREFIXES[kind])
        if kind == "message":
            role, content = item.get("role"), item.get("content")
            if isinstance(content, str):
                part = "output_text" if role == "assistant" else "input_text"
                kept["content"] = [{"type": part, "text": content}]
            kept.setdefault("status", "completed")
        out.append(kept)
    return out


async def _insert(conn: Any, ident: str, items: list[JSONObject]) -> None:
    if not items:
        return
    await conn.execute(
        _q("insert_items"),
        {
            "conversation_id": ident,
            "ids": [item["id"] for item in items],
            "items": [Jsonb(storable_json(item)) for item in items],
        },
    )


async def _row(
    conn: Any, name: str, tenant_id: str, ident: str, *, param: str = "conversation_id"
) -> dict[str, Any]:
    row: dict[str, Any] | None = await (
        await conn.execute(_q(name), {"id": ident, "tenant_id": tenant_id})
    ).fetchone()
    if row is None:
        raise _missing(ident, param)
    return row


async def _item(conn: Any, ident: str, item_id: str, param: str = "item_id") -> dict[str, Any]:
    """The item's row (``seq``, ``item``); 404 naming ``param`` when it is not there."""
    cur = await conn.execute(_q("get_item"), {"conversation_id": ident, "item_id": item_id})
    row: dict[str, Any] | None = await cur.fetchone()
    if row is None:
        raise NotFound(f"No item `{item_id}` in `{ident}`.", param=param)
    return row


def _missing(ident: str, param: str = "conversation_id") -> NotFound:
    return NotFound(f"No conversation `{ident}`.", param=param, code="conversation_not_found")


def _view(row: dict[str, Any]) -> JSONObject:
    return {
        "id": row["id"],
        "object": "conversation",
        "created_at": int(row["created_at"].timestamp()),
        "metadata": row["metadata"],
    }


def _page(items: list[JSONObject], *, has_more: bool) -> JSONObject:
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


def _metadata(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if (
        not isinstance(value, dict)
        or len(value) > MAX_METADATA
        or not all(
            isinstance(k, str) and len(k) <= 64 and isinstance(v, str) and len(v) <= 512
            for k, v in value.items()
        )
    ):
        raise InvalidRequest(
            f"`metadata` must be an object of at most {MAX_METADATA} strings (keys up to 64 "
            "characters, values up to 512).",
            param="metadata",
        )
    check_storable(value, "metadata")
    return value
