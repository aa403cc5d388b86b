"""Translation between OpenAI's Responses API and the chat request path.

``chat_request`` turns a ``POST /v1/responses`` body (plus the turns of the conversation it
continues) into the OpenAI chat request every layer of the request path understands;
``response_object`` turns the resulting ``chat.completion`` back into a ``response``.
(The stream of chunks is translated into typed events by ``responses.events``.)

What the chat path cannot express (built-in tools such as ``web_search``) and what names
OpenAI's own stores (a stored ``prompt``) is refused with ``InvalidRequest`` naming the field,
before anything is spent. ``reasoning``
items a client resends (a reasoning model's earlier output) are left out of the chat request
and reach a passthrough deployment in the body itself.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from propylon.errors import InvalidRequest
from propylon.gateway.citations import extension_citations, file_citations
from propylon.gateway.protocol import JSONObject

# Fields whose meaning lives in OpenAI's own stores, which Propylon does not have: ignoring
# them would answer without the prompt the client meant.
_REFUSED = {"prompt": "send the prompt's text as `instructions` and `input`."}
_PASSED = (
    "temperature",
    "top_p",
    "user",
    "parallel_tool_calls",
    "seed",
    "metadata",  # the request log's labels, as on chat requests
    "propylon",
)
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def item_status(finish: str | None) -> str:
    """A finished message item's status: `incomplete` when the answer was cut (the
    response's ``incomplete_details`` say why), else `completed`."""
    return "incomplete" if _INCOMPLETE.get(finish or "") else "completed"


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(16)}"


# --- Responses request -> chat request ----------------------------------------------------


def conversation(body: JSONObject) -> list[JSONObject]:
    """The chat turns of ``input`` (without ``instructions``), validated."""
    return chat_turns(body.get("input"), "input")


def chat_turns(value: object, field: str) -> list[JSONObject]:
    """The chat turns of Responses items (a string: one user message), validated; errors
    name ``field`` (``input``, a conversation's ``items``)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise InvalidRequest(
            f"`{field}` must be a string or a non-empty array of items.", param=field
        )
    turns: list[JSONObject] = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        if not isinstance(item, dict):
            raise InvalidRequest(f"`{where}` must be an object.", param=where)
        kind = item.get("type", "message")
        if kind == "message":
            turns.append(_message(item, where))
        elif kind == "function_call":
            call = _function_call(item, where)
            last = turns[-1] if turns else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                last["tool_calls"].append(call)
            else:
                turns.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            turns.append(_function_output(item, where))
        elif kind == "reasoning":
            continue  # a reasoning model's own earlier output, resent: chat has no word for it
        else:
            raise InvalidRequest(
                f"`{where}.type` {kind!r} is not supported: send messages, function_call and "
                "function_call_output items.",
                param=f"{where}.type",
            )
    return turns


def chat_request(
    body: JSONObject, history: list[JSONObject], turns: list[JSONObject]
) -> JSONObject:
    """The chat request for a Responses body continuing ``history`` with ``turns``."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` is required and must be a non-empty string.", param="model")
    for name, instead in _REFUSED.items():
        if body.get(name) is not None:
            raise InvalidRequest(f"`{name}` is not supported here: {instead}", param=name)
    messages: list[JSONObject] = []
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("`instructions` must be a string.", param="instructions")
        if instructions:
            messages.append({"role": "system", "content": instructions})
    messages.extend(history)
    messages.extend(turns)
    request: JSONObject = {"model": model, "messages": messages}
    for name in _PASSED:
        if body.get(name) is not None:
            request[name] = body[name]
    limit = body.get("max_output_tokens")
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidRequest(
                "`max_output_tokens` must be a positive integer.", param="max_output_tokens"
            )
        request["max_completion_tokens"] = limit
    request.update(_tools(body))
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        request["response_format"] = response_format
    return request


def _message(item: JSONObject, where: str) -> JSONObject:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise InvalidRequest(
            f"`{where}.role` must be user, assistant, system or developer.", param=f"{where}.role"
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise InvalidRequest(
            f"`{where}.content` must be a string or an array of parts.", param=f"{where}.content"
        )
    parts: list[JSONObject] = []
    for index, part in enumerate(content):
        part_where = f"{where}.content[{index}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text", "refusal") and isinstance(part, dict):
            text = part.get("refusal" if kind == "refusal" else "text")
            if not isinstance(text, str):
                raise InvalidRequest(f"`{part_where}.text` must be a string.", param=part_where)
            parts.append({"type": "text", "text": text})
        elif kind == "input_image" and isinstance(part, dict):
            url = part.get("image_url")
            if not isinstance(url, str) or not url:
                raise InvalidRequest(
                    f"`{part_where}.image_url` must be a URL (file ids are not supported).",
                    param=part_where,
                )
            image: JSONObject = {"url": url}
            if isinstance(part.get("detail"), str):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise InvalidRequest(
                f"`{part_where}` must be an input_text, output_text or input_image part.",
                param=part_where,
            )
    if role == "assistant" or all(part["type"] == "text" for part in parts):
        # Assistant and system turns take text only; joined, they need no parts at all.
        return {"role": role, "content": "".join(part.get("text", "") for part in parts)}
    return {"role": role, "content": parts}


def _function_call(item: JSONObject, where: str) -> JSONObject:
    call_id, name, arguments = item.get("call_id"), item.get("name"), item.get("arguments")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise InvalidRequest(f"`{where}` needs a `call_id` and a `name`.", param=where)
    if not isinstance(arguments, str):
        raise InvalidRequest(
            f"`{where}.arguments` must be a JSON string.", param=f"{where}.arguments"
        )
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


_TEXT = ("input_text", "output_text")


def _function_output(item: JSONObject, where: str) -> JSONObject:
    call_id, output = item.get("call_id"), item.get("output")
    if not isinstance(call_id, str):
        raise InvalidRequest(f"`{where}.call_id` is required.", param=f"{where}.call_id")
    if isinstance(output, list):  # text parts, as OpenAI's API also takes them
        texts = [p.get("text") for p in output if isinstance(p, dict) and p.get("type") in _TEXT]
        if len(texts) == len(output) and all(isinstance(text, str) for text in texts):
            output = "".join(str(text) for text in texts)
    if not isinstance(output, str):
        raise InvalidRequest(
            f"`{where}.output` must be a string or an array of input_text parts.",
            param=f"{where}.output",
        )
    return {"role": "tool", "tool_call_id": call_id, "content": output}


def _tools(body: JSONObject) -> JSONObject:
    tools = body.get("tools")
    out: JSONObject = {}
    if tools:
        if not isinstance(tools, list):
            raise InvalidRequest("`tools` must be an array.", param="tools")
        out["tools"] = [_tool(tool, f"tools[{index}]") for index, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    if choice is None:
        return out
    if choice in ("auto", "none", "required"):
        out["tool_choice"] = choice
    elif isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if not isinstance(name, str):
            raise InvalidRequest("`tool_choice.name` is required.", param="tool_choice")
        out["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise InvalidRequest(
            "`tool_choice` must be auto, none, required, or name a function.", param="tool_choice"
        )
    return out


def _tool(tool: object, where: str) -> JSONObject:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise InvalidRequest(
            f"`{where}` of type {kind!r} is not supported: only function tools are.", param=where
        )
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"`{where}.name` is required.", param=f"{where}.name")
    function: JSONObject = {
        "name": name,
        "parameters": tool.get("parameters") or {"type": "object", "properties": {}},
    }
    for field in ("description", "strict"):
        if tool.get(field) is not None:
            function[field] = tool[field]
    return {"type": "function", "function": function}


def _response_format(text: object) -> JSONObject | None:
    if text is None:
        return None
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and isinstance(fmt, dict):
        name, schema = fmt.get("name"), fmt.get("schema")
        if not isinstance(name, str) or not isinstance(schema, dict):
            raise InvalidRequest(
                "`text.format` of type json_schema needs a `name` and a `schema`.",
                param="text.format",
            )
        spec: JSONObject = {"name": name, "schema": schema}
        for field in ("description", "strict"):
            if fmt.get(field) is not None:
                spec[field] = fmt[field]
        return {"type": "json_schema", "json_schema": spec}
    raise InvalidRequest(
        "`text.format.type` must be text, json_object or json_schema.", param="text.format"
    )


# --- chat completion -> response ----------------------------------------------------------


def output_items(completion: JSONObject) -> tuple[list[JSONObject], str | None]:
    """The output items of a ``chat.completion``, and its finish reason."""
    choices = completion.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices else {}
    message = choice.get("message") if isinstance(choice, dict) else None
    message = message if isinstance(message, dict) else {}
    items: list[JSONObject] = []
    text = message.get("content")
    finish = choice.get("finish_reason") if isinstance(choice, dict) else None
    finish = finish if isinstance(finish, str) else None
    if isinstance(text, str) and text:
        annotations = file_citations(extension_citations(completion), text)
        status = item_status(finish)
        items.append(message_item(new_id("msg"), text, status, annotations=annotations))
    for call in message.get("tool_calls") or []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            items.append(
                function_call_item(
                    new_id("fc"),
                    str(call.get("id") or new_id("call")),
                    str(function.get("name") or ""),
                    str(function.get("arguments") or ""),
                )
            )
    return items, finish


def message_item(
    item_id: str,
    text: str,
    status: str = "completed",
    annotations: list[JSONObject] | None = None,
) -> JSONObject:
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": annotations or []}]
        if status != "in_progress"
        else [],
    }


def function_call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str = "completed"
) -> JSONObject:
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }


def response_object(
    body: JSONObject,
    *,
    response_id: str,
    created_at: int,
    status: str,
    output: list[JSONObject],
    model: object = None,
    finish: str | None = None,
    usage: Mapping[str, Any] | None = None,
    error: JSONObject | None = None,
) -> JSONObject:
    """A ``response`` object echoing the request's settings, as OpenAI's does."""
    reason = _INCOMPLETE.get(finish or "")
    if status == "completed" and reason is not None:
        status = "incomplete"
    text = body.get("text") if isinstance(body.get("text"), dict) else None
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "error": error,
        "incomplete_details": {"reason": reason} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": model if isinstance(model, str) else body.get("model"),
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "conversation": _conversation_echo(body.get("conversation")),
        "store": body.get("store", True) is not False,
        "temperature": body.get("temperature"),
        "text": text or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p"),
        "usage": responses_usage(usage) if usage is not None else None,
        "user": body.get("user"),
    }


def _conversation_echo(value: object) -> JSONObject | None:
    ident = value.get("id") if isinstance(value, dict) else value
    return {"id": ident} if isinstance(ident, str) else None


def responses_usage(usage: Mapping[str, Any]) -> JSONObject:
    """Chat usage in the Responses shape."""

    def count(key: str, within: Mapping[str, Any] = usage) -> int:
        value = within.get(key)
        return value if isinstance(value, int) else 0

    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    prompt, completion = count("prompt_tokens"), count("completion_tokens")
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": count("cached_tokens", prompt_details)
            if isinstance(prompt_details, dict)
            else 0
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": count("reasoning_tokens", completion_details)
            if isinstance(completion_details, dict)
            else 0
        },
        "total_tokens": prompt + completion,
    }


def assistant_turn(output: list[JSONObject]) -> JSONObject | None:
    """The chat turn that ``output`` stands for in a continued conversation."""
    text = "".join(
        part.get("text", "")
        for item in output
        if item.get("type") == "message"
        for part in item.get("content", [])
    )
    calls = [
        {
            "id": item["call_id"],
            "type": "function",
            "function": {"name": item["name"], "arguments": item["arguments"]},
        }
        for item in output
        if item.get("type") == "function_call"
    ]
    if not text and not calls:
        return None
    turn: JSONObject = {"role": "assistant", "content": text or None}
    if calls:
        turn["tool_calls"] = calls
    return turn


def chat_completion(response: JSONObject) -> JSONObject:
    """The ``chat.completion`` standing for an upstream's own Responses answer (passthrough):
    its text and function calls, and its usage in chat's shape, for the request path's
    layers (guard, cache, ledger, request log)."""
    text: list[str] = []
    calls: list[JSONObject] = []
    output = response.get("output")
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    text.append(part["text"])
        elif item.get("type") == "function_call":
            calls.append(
                {
                    "id": item.get("call_id"),
                    "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments")},
                }
            )
    message: JSONObject = {"role": "assistant", "content": "".join(text) or None}
    if calls:
        message["tool_calls"] = calls
    reasoning = reasoning_text(output)
    if reasoning:  # billed output too; told the way DeepSeek and vLLM tell reasoning
        message["reasoning_content"] = reasoning
    finish = "tool_calls" if calls else "stop"
    if response.get("status") == "incomplete":
        finish = "length"
    completion: JSONObject = {
        "id": response.get("id"),
        "object": "chat.completion",
        "created": response.get("created_at"),
        "model": response.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
    }
    usage = chat_usage(response.get("usage"))
    if usage is not None:
        completion["usage"] = usage
    return completion


def as_sent(response: JSONObject, body: JSONObject, response_id: str) -> JSONObject:
    """A passthrough's response as the client should see it: Propylon's id for it (the one
    stored and recorded), the public model name, and the client's own ``instructions`` in
    place of those the upstream echoes (which carry the guard's canary)."""
    out = {**response, "id": response_id, "model": body.get("model")}
    if "instructions" in out:
        out["instructions"] = body.get("instructions")
    return out


def reasoning_text(output: object) -> str:
    """The text of the reasoning items of a response's ``output`` (summaries and, where a
    server shows it, the reasoning itself)."""
    pieces: list[str] = []
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict) or item.get("type") != "reasoning":
            continue
        for field in ("summary", "content"):
            for part in item.get(field) or []:
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    pieces.append(part["text"])
    return "\n".join(pieces)


def chat_usage(usage: object) -> JSONObject | None:
    """A Responses ``usage`` in chat's shape (reasoning tokens kept in the details), or None
    when there is none, so the ledger estimates and says so."""
    if not isinstance(usage, dict):
        return None

    def count(key: str, within: Mapping[str, Any] = usage) -> int:
        value = within.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else 0

    inputs = usage.get("input_tokens_details")
    outputs = usage.get("output_tokens_details")
    prompt, completion = count("input_tokens"), count("output_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": count("total_tokens") or prompt + completion,
        "prompt_tokens_details": {
            "cached_tokens": count("cached_tokens", inputs) if isinstance(inputs, dict) else 0
        },
        "completion_tokens_details": {
            "reasoning_tokens": count("reasoning_tokens", outputs)
            if isinstance(outputs, dict)
            else 0
        },
    }
