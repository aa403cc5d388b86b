"""Requests, both ways, between OpenAI chat completions and Anthropic's Messages API.

``messages_request`` builds the body of ``POST /v1/messages`` for an Anthropic deployment from
an OpenAI chat request. ``chat_request`` builds the OpenAI chat request for a Messages body
sent to Propylon's own ``/v1/messages``, so it can take the chat request path.

What Anthropic cannot express (``n`` > 1, legacy ``functions``, unknown content parts, tool
arguments that are not a JSON object, and the fields of ``UNSUPPORTED``: penalties, ``seed``,
``logprobs``…) raises ``InvalidRequest`` naming the field before anything is sent: never
dropped silently. ``response_format`` (``json_schema``, ``json_object``) becomes a forced tool
whose input is the JSON answer; ``response_tool`` names it so the answer can be turned back
into message content (``answers.chat_completion``, ``streams.completion_chunks``). In the
other direction, what chat cannot carry (``top_k``, thinking blocks, cache-control markers,
documents) is dropped or, for content, refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from propylon.errors import InvalidRequest
from propylon.gateway.protocol import JSONObject
from propylon.gateway.validation import one_choice

DEFAULT_MAX_TOKENS = 4096
"""Anthropic requires ``max_tokens``; OpenAI clients often leave it out."""

_TOOL_ID_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
RESPONSE_TOOL = "json_response"
"""The forced tool's name when the ``json_schema`` has none (or only characters Anthropic
refuses in a tool name)."""


def _nonzero(value: object) -> bool:
    return value is not None and value != 0


UNSUPPORTED: dict[str, Callable[[object], bool]] = {
    "logprobs": lambda value: value is True,
    "top_logprobs": lambda value: value is not None,
    "logit_bias": lambda value: bool(value),
    "presence_penalty": _nonzero,
    "frequency_penalty": _nonzero,
    "seed": lambda value: value is not None,
    "prediction": lambda value: value is not None,
    "audio": lambda value: value is not None,
}
"""OpenAI fields Anthropic's Messages API has no equivalent for, and when a value asks for
something (``logprobs: false`` asks for nothing)."""


# --- OpenAI request -> Anthropic request -------------------------------------------------


def messages_request(request: JSONObject, model: str, *, stream: bool) -> JSONObject:
    """The Anthropic Messages body for an OpenAI chat request, sent to ``model``."""
    if request.get("functions") or request.get("function_call"):
        raise InvalidRequest(
            "Legacy `functions` are not supported for this model; use `tools`.",
            param="functions",
        )
    one_choice(request)
    for param, asks in UNSUPPORTED.items():
        if asks(request.get(param)):
            raise InvalidRequest(
                f"`{param}` is not supported by this model (an Anthropic deployment): leave "
                "it out, or use a model served by an OpenAI-compatible deployment.",
                param=param,
            )
    system, messages = _conversation(request.get("messages"))
    body: JSONObject = {
        "model": model,
        "max_tokens": _max_tokens(request),
        "messages": messages,
    }
    if system:
        body["system"] = system
    body.update(_tools(request))
    if (tool := response_format_tool(request)) is not None:
        body["tools"] = [tool]
        body["tool_choice"] = {"type": "tool", "name": tool["name"]}
    body.update(_sampling(request))
    thinking = request.get("thinking")
    if isinstance(thinking, dict):  # Anthropic's extended thinking, asked in chat (as LiteLLM)
        body["thinking"] = thinking
    user = request.get("user")
    if isinstance(user, str) and user:
        body["metadata"] = {"user_id": user}
    if stream:
        body["stream"] = True
    return body


def _max_tokens(request: JSONObject) -> int:
    for name in ("max_completion_tokens", "max_tokens"):
        value = request.get(name)
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise InvalidRequest(f"`{name}` must be a positive integer.", param=name)
            return value
    return DEFAULT_MAX_TOKENS


def _sampling(request: JSONObject) -> JSONObject:
    out: JSONObject = {}
    temperature = request.get("temperature")
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        out["temperature"] = min(max(float(temperature), 0.0), 1.0)  # OpenAI 0..2, Anthropic 0..1
    top_p = request.get("top_p")
    # Newer Claude models refuse temperature and top_p together; top_p 1 is a no-op anyway.
    if isinstance(top_p, int | float) and not isinstance(top_p, bool) and top_p != 1:
        out["top_p"] = top_p
    stop = request.get("stop")
    if stop is not None and not (
        isinstance(stop, str)
        or (isinstance(stop, list) and all(isinstance(item, str) for item in stop))
    ):
        raise InvalidRequest("`stop` must be a string or an array of strings.", param="stop")
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif stop:
        out["stop_sequences"] = stop
    return out


def _conversation(messages: object) -> tuple[str, list[JSONObject]]:
    """The joined system prompt, and the turns merged so that roles alternate."""
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("`messages` must be a non-empty array.", param="messages")
    system: list[str] = []
    turns: list[JSONObject] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise InvalidRequest(f"`{where}` must be an object.", param=where)
        role = message.get("role")
        if role in ("system", "developer"):
            if text := _plain_text(message.get("content"), where):
                system.append(text)
            continue
        if role == "user":
            role, blocks = "user", _content_blocks(message.get("content"), where)
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, where)]
        else:
            raise InvalidRequest(
                f"`{where}.role` {role!r} is not supported for this model.", param=f"{where}.role"
            )
        if not blocks:
            continue  # Anthropic rejects empty turns; an empty one carries nothing anyway
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:  # Anthropic wants tool results first in their turn
        turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    if not turns:
        raise InvalidRequest(
            "`messages` needs at least one user or assistant message with content.",
            param="messages",
        )
    return "\n\n".join(system), turns


def _plain_text(content: object, where: str) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    blocks = _content_blocks(content, where)
    if any(block["type"] != "text" for block in blocks):
        raise InvalidRequest(f"`{where}.content` may hold text only.", param=f"{where}.content")
    return "\n".join(block["text"] for block in blocks)


def _content_blocks(content: object, where: str) -> list[JSONObject]:
    if content is None:
        return []
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(
            f"`{where}.content` must be a string or an array of parts.", param=f"{where}.content"
        )
    blocks: list[JSONObject] = []
    for index, part in enumerate(content):
        part_where = f"{where}.content[{index}]"
        if not isinstance(part, dict):
            raise InvalidRequest(f"`{part_where}` must be an object.", param=part_where)
        kind = part.get("type")
        if kind in ("text", "refusal"):
            text = part.get(kind)
            if not isinstance(text, str):
                raise InvalidRequest(f"`{part_where}.{kind}` must be a string.", param=part_where)
            if text:
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(_image_block(part.get("image_url"), part_where))
        else:
            raise InvalidRequest(
                f"`{part_where}` of type {kind!r} is not supported for this model.",
                param=part_where,
            )
    return blocks


def _image_block(image: object, where: str) -> JSONObject:
    url = image.get("url") if isinstance(image, dict) else image
    if isinstance(url, str) and url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    if isinstance(url, str) and url.startswith("data:"):
        header, comma, data = url[5:].partition(",")
        media_type, *params = header.split(";")
        if comma and media_type and "base64" in params:
            source = {"type": "base64", "media_type": media_type, "data": data}
            return {"type": "image", "source": source}
    raise InvalidRequest(
        f"`{where}.image_url.url` must be an http(s) URL or a base64 data URL.", param=where
    )


def _assistant_blocks(message: Mapping[str, Any], where: str) -> list[JSONObject]:
    blocks = _content_blocks(message.get("content"), where)
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise InvalidRequest(f"`{where}.tool_calls` must be an array.", param=f"{where}.tool_calls")
    for index, call in enumerate(calls):
        blocks.append(_tool_use(call, f"{where}.tool_calls[{index}]"))
    return blocks


def _tool_use(call: object, where: str) -> JSONObject:
    function = call.get("function") if isinstance(call, dict) else None
    if not isinstance(call, dict) or not isinstance(function, dict):
        raise InvalidRequest(f"`{where}` must be a function call.", param=where)
    name, call_id = function.get("name"), call.get("id")
    if not isinstance(name, str) or not isinstance(call_id, str):
        raise InvalidRequest(f"`{where}` needs an `id` and a `function.name`.", param=where)
    arguments = function.get("arguments")
    try:
        parsed = orjson.loads(arguments) if isinstance(arguments, str) and arguments.strip() else {}
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        raise InvalidRequest(
            f"`{where}.function.arguments` must be a JSON object.",
            param=f"{where}.function.arguments",
        )
    return {"type": "tool_use", "id": _tool_id(call_id), "name": name, "input": parsed}


def _tool_result(message: Mapping[str, Any], where: str) -> JSONObject:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str):
        raise InvalidRequest(
            f"`{where}.tool_call_id` is required for tool messages.", param=f"{where}.tool_call_id"
        )
    result: JSONObject = {"type": "tool_result", "tool_use_id": _tool_id(call_id)}
    content = message.get("content")
    if isinstance(content, str):
        if content:
            result["content"] = content
    elif blocks := _content_blocks(content, where):
        result["content"] = blocks
    return result


def _tool_id(call_id: str) -> str:
    """Anthropic accepts ``[a-zA-Z0-9_-]`` in tool ids; others' ids may carry more."""
    return _TOOL_ID_UNSAFE.sub("_", call_id)


def _tools(request: JSONObject) -> JSONObject:
    tools = request.get("tools")
    choice = request.get("tool_choice")
    anthropic_choice = _tool_choice(choice)  # checked with or without tools: never ignored
    if not tools:
        return {}
    if not isinstance(tools, list):
        raise InvalidRequest("`tools` must be an array.", param="tools")
    out: JSONObject = {
        "tools": [_tool(tool, f"tools[{index}]") for index, tool in enumerate(tools)]
    }
    if request.get("parallel_tool_calls") is False and anthropic_choice["type"] != "none":
        anthropic_choice["disable_parallel_tool_use"] = True
    if choice is not None or "disable_parallel_tool_use" in anthropic_choice:
        out["tool_choice"] = anthropic_choice
    return out


def _tool_choice(choice: object) -> JSONObject:
    """Anthropic's ``tool_choice`` for an OpenAI one (``auto`` when there is none)."""
    if choice is None or choice == "auto":
        anthropic_choice: JSONObject = {"type": "auto"}
    elif choice == "required":
        anthropic_choice = {"type": "any"}
    elif choice == "none":
        anthropic_choice = {"type": "none"}
    elif isinstance(name := _forced_function(choice), str):
        anthropic_choice = {"type": "tool", "name": name}
    else:
        raise InvalidRequest(
            "`tool_choice` must be auto, required, none, or name a function.", param="tool_choice"
        )
    return anthropic_choice


def response_format_tool(request: JSONObject) -> JSONObject | None:
    """The forced tool that carries ``response_format``; ``None`` for text answers."""
    spec = request.get("response_format")
    if spec is None:
        return None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if kind == "text":
        return None
    if kind not in ("json_object", "json_schema") or not isinstance(spec, dict):
        raise InvalidRequest(
            "`response_format` must be an object whose `type` is text, json_object or json_schema.",
            param="response_format",
        )
    if request.get("tools"):
        raise InvalidRequest(
            "`response_format` with `tools` is not supported by this model (an Anthropic "
            "deployment answers in JSON through a tool of its own).",
            param="response_format",
        )
    name, schema, description = RESPONSE_TOOL, {"type": "object"}, "The answer, as JSON."
    if kind == "json_schema":
        declared = spec.get("json_schema")
        if not isinstance(declared, dict):
            raise InvalidRequest(
                "`response_format.json_schema` must be an object with a `schema`.",
                param="response_format.json_schema",
            )
        schema = declared.get("schema") or schema
        if not isinstance(schema, dict) or schema.get("type") != "object":
            raise InvalidRequest(
                "`response_format.json_schema.schema` must be a JSON Schema of `type: "
                "object` for this model (an Anthropic deployment).",
                param="response_format.json_schema.schema",
            )
        label = declared.get("name")
        if isinstance(label, str) and label and not _TOOL_ID_UNSAFE.search(label):
            name = label[:64]
        if isinstance(declared.get("description"), str):
            description = declared["description"]
    return {"name": name, "description": description, "input_schema": schema}


def response_tool(request: JSONObject) -> str | None:
    """The name of the tool whose input is the answer (``response_format``), if any."""
    tool = response_format_tool(request)
    return str(tool["name"]) if tool is not None else None


def _forced_function(choice: object) -> object:
    function = choice.get("function") if isinstance(choice, dict) else None
    return function.get("name") if isinstance(function, dict) else None


def _tool(tool: object, where: str) -> JSONObject:
    function = tool.get("function") if isinstance(tool, dict) else None
    if (
        not isinstance(tool, dict)
        or tool.get("type") != "function"
        or not isinstance(function, dict)
    ):
        raise InvalidRequest(f"`{where}` must be a function tool.", param=where)
    name = function.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidRequest(f"`{where}.function.name` is required.", param=where)
    spec: JSONObject = {
        "name": name,
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if isinstance(function.get("description"), str):
        spec["description"] = function["description"]
    return spec


# --- Anthropic request -> OpenAI request -------------------------------------------------


def chat_request(body: JSONObject) -> JSONObject:
    """The OpenAI chat request for a ``POST /v1/messages`` body (``stream`` left out)."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("model: Field required", param="model")
    max_tokens = body.get("max_tokens")
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise InvalidRequest("max_tokens: must be a positive integer", param="max_tokens")
    messages = _system_messages(body.get("system"))
    turns = body.get("messages")
    if not isinstance(turns, list) or not turns:
        raise InvalidRequest("messages: must be a non-empty array", param="messages")
    for index, turn in enumerate(turns):
        messages.extend(_chat_turns(turn, f"messages.{index}", last=index == len(turns) - 1))
    request: JSONObject = {"model": model, "messages": messages, "max_tokens": max_tokens}
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("stream: must be a boolean", param="stream")
    for name in ("temperature", "top_p"):  # Anthropic's range for both
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise InvalidRequest(f"{name}: must be a number from 0 to 1", param=name)
        request[name] = value
    stop = body.get("stop_sequences")
    if stop is not None:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise InvalidRequest(
                "stop_sequences: must be an array of strings", param="stop_sequences"
            )
        if stop:
            request["stop"] = stop
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        request["user"] = metadata["user_id"]
    if isinstance(body.get("propylon"), dict):
        request["propylon"] = body["propylon"]
    request.update(_chat_tools(body))
    return request


def _system_messages(system: object) -> list[JSONObject]:
    if system is None or system == "":
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if isinstance(system, list):
        texts = [block.get("text") for block in system if isinstance(block, dict)]
        if len(texts) == len(system) and all(isinstance(text, str) for text in texts):
            return [{"role": "system", "content": "\n\n".join(str(text) for text in texts)}]
    raise InvalidRequest("system: must be a string or an array of text blocks", param="system")


def _chat_turns(turn: object, where: str, *, last: bool) -> list[JSONObject]:
    """The chat messages of one Anthropic turn: tool results become ``tool`` messages. As
    Anthropic's API, only the last turn, when it is the assistant's, may be empty."""
    if not isinstance(turn, dict) or turn.get("role") not in ("user", "assistant"):
        raise InvalidRequest(f"{where}: must be a user or assistant message", param=where)
    role, content = turn["role"], turn.get("content")
    if content in ("", []) and not (last and role == "assistant"):
        raise InvalidRequest(
            f"{where}.content: must not be empty (only a final assistant turn may be)",
            param=f"{where}.content",
        )
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise InvalidRequest(
            f"{where}.content: must be a string or an array of blocks", param=f"{where}.content"
        )
    parts: list[JSONObject] = []
    calls: list[JSONObject] = []
    results: list[JSONObject] = []
    for index, block in enumerate(content):
        block_where = f"{where}.content.{index}"
        kind = block.get("type") if isinstance(block, dict) else None
        if not isinstance(block, dict):
            raise InvalidRequest(f"{block_where}: must be a content block", param=block_where)
        if kind == "text":
            if not isinstance(block.get("text"), str):
                raise InvalidRequest(
                    f"{block_where}.text: must be a string", param=f"{block_where}.text"
                )
            parts.append({"type": "text", "text": block["text"]})
        elif kind == "image" and role == "user":
            parts.append(
                {"type": "image_url", "image_url": {"url": _image_url(block, block_where)}}
            )
        elif kind == "tool_use" and role == "assistant":
            calls.append(_chat_call(block, block_where))
        elif kind == "tool_result" and role == "user":
            results.append(_chat_result(block, block_where))
        elif kind in ("thinking", "redacted_thinking"):
            continue  # the model's own reasoning; no chat equivalent to send back
        else:
            raise InvalidRequest(
                f"{block_where}: a {kind!r} block is not supported in a {role} message",
                param=block_where,
            )
    out: list[JSONObject] = [*results]
    if role == "assistant":
        text = "".join(part["text"] for part in parts)
        if text or calls:
            message: JSONObject = {"role": "assistant", "content": text or None}
            if calls:
                message["tool_calls"] = calls
            out.append(message)
    elif parts:
        only_text = all(part["type"] == "text" for part in parts)
        joined = "".join(part["text"] for part in parts) if only_text else parts
        out.append({"role": "user", "content": joined})
    return out


def _image_url(block: JSONObject, where: str) -> str:
    source = block.get("source")
    if isinstance(source, dict):
        if source.get("type") == "url" and isinstance(source.get("url"), str):
            return str(source["url"])
        media, data = source.get("media_type"), source.get("data")
        if source.get("type") == "base64" and isinstance(media, str) and isinstance(data, str):
            return f"data:{media};base64,{data}"
    raise InvalidRequest(f"{where}.source: must be a base64 or url image source", param=where)


def _chat_call(block: JSONObject, where: str) -> JSONObject:
    call_id, name = block.get("id"), block.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise InvalidRequest(f"{where}: a tool_use block needs an id and a name", param=where)
    arguments = orjson.dumps(block.get("input") or {}).decode()
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _chat_result(block: JSONObject, where: str) -> JSONObject:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str):
        raise InvalidRequest(f"{where}.tool_use_id: Field required", param=f"{where}.tool_use_id")
    content = block.get("content")
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list) and all(
        isinstance(part, dict) and isinstance(part.get("text"), str) for part in content
    ):
        text = "\n".join(part["text"] for part in content)
    else:
        raise InvalidRequest(
            f"{where}.content: tool results may hold text only here", param=f"{where}.content"
        )
    if block.get("is_error") is True:
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _chat_tools(body: JSONObject) -> JSONObject:
    tools = body.get("tools")
    out: JSONObject = {}
    if tools:
        if not isinstance(tools, list):
            raise InvalidRequest("tools: must be an array", param="tools")
        out["tools"] = [_chat_tool(tool, f"tools.{index}") for index, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    if choice is None:
        return out
    kind = choice.get("type") if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or kind not in ("auto", "any", "tool", "none"):
        raise InvalidRequest("tool_choice: must be auto, any, tool or none", param="tool_choice")
    if kind == "tool":
        if not isinstance(choice.get("name"), str):
            raise InvalidRequest("tool_choice.name: Field required", param="tool_choice")
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    else:
        out["tool_choice"] = {"auto": "auto", "any": "required", "none": "none"}[str(kind)]
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False
    return out


def _chat_tool(tool: object, where: str) -> JSONObject:
    if not isinstance(tool, dict) or tool.get("type", "custom") != "custom":
        raise InvalidRequest(f"{where}: only custom (function) tools are supported", param=where)
    name, schema = tool.get("name"), tool.get("input_schema")
    if not isinstance(name, str) or not name or not isinstance(schema, dict):
        raise InvalidRequest(f"{where}: a tool needs a name and an input_schema", param=where)
    function: JSONObject = {"name": name, "parameters": schema}
    if isinstance(tool.get("description"), str):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}
