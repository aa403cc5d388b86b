"""Translation between OpenAI chat completions and Anthropic's Messages API bodies.

``messages_request`` builds the body of ``POST /v1/messages`` from an OpenAI chat request;
``chat_completion`` turns Anthropic's ``message`` into a ``chat.completion``. (Stream events
are translated in ``anthropic``, beside the stream they come from.)

What Anthropic cannot express (``n`` > 1, legacy ``functions``, unknown content parts, tool
arguments that are not a JSON object, and the fields of ``UNSUPPORTED``: penalties, ``seed``,
``logprobs``…) raises ``InvalidRequest`` naming the field before anything is sent: never
dropped silently. ``response_format`` (``json_schema``, ``json_object``) becomes a forced tool
whose input is the JSON answer; ``response_tool`` names it so the answer can be turned back
into message content.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from propylon.errors import InvalidRequest, UpstreamError
from propylon.gateway.protocol import JSONObject

DEFAULT_MAX_TOKENS = 4096
"""Anthropic requires ``max_tokens``; OpenAI clients often leave it out."""

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
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
    n = request.get("n")
    if n is not None and n != 1:
        raise InvalidRequest("This model returns one choice per request: `n` must be 1.", param="n")
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
    if isinstance(stop, str):
        out["stop_sequences"] = [stop]
    elif isinstance(stop, list) and stop:
        if not all(isinstance(item, str) for item in stop):
            raise InvalidRequest("`stop` must be a string or an array of strings.", param="stop")
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
    if not tools:
        return {}
    if not isinstance(tools, list):
        raise InvalidRequest("`tools` must be an array.", param="tools")
    out: JSONObject = {
        "tools": [_tool(tool, f"tools[{index}]") for index, tool in enumerate(tools)]
    }
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
    if request.get("parallel_tool_calls") is False and anthropic_choice["type"] != "none":
        anthropic_choice["disable_parallel_tool_use"] = True
    if choice is not None or "disable_parallel_tool_use" in anthropic_choice:
        out["tool_choice"] = anthropic_choice
    return out


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


# --- Anthropic message -> OpenAI completion ----------------------------------------------


def chat_completion(
    message: JSONObject, *, created: int, name: str, answer_tool: str | None = None
) -> JSONObject:
    """The ``chat.completion`` for Anthropic's answer; ``name`` names the upstream in errors.
    The input of the tool ``answer_tool`` (``response_format``) is the message content."""
    blocks = message.get("content")
    if message.get("type") != "message" or not isinstance(blocks, list):
        raise UpstreamError(f"{name} returned a body that is not a message")
    texts: list[str] = []
    calls: list[JSONObject] = []
    for block in blocks:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif block.get("type") == "tool_use" and answer_tool and block.get("name") == answer_tool:
            texts.append(orjson.dumps(block.get("input") or {}).decode())
        elif block.get("type") == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {"name": block.get("name"), "arguments": arguments},
                }
            )
    reply: JSONObject = {
        "role": "assistant",
        "content": "".join(texts) if texts or not calls else None,
    }
    if calls:
        reply["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{message.get('id', '')}",
        "object": "chat.completion",
        "created": created,
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "finish_reason": "stop"
                if answer_tool and not calls
                else finish_reason(message.get("stop_reason")),
            }
        ],
        "usage": openai_usage(message.get("usage")),
    }


def finish_reason(stop_reason: object) -> str:
    """OpenAI's ``finish_reason`` for Anthropic's ``stop_reason``."""
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def openai_usage(usage: object) -> JSONObject:
    """OpenAI's usage, where prompt tokens include those read from and written to the cache."""
    counts = usage if isinstance(usage, dict) else {}

    def count(key: str) -> int:
        value = counts.get(key)
        return value if isinstance(value, int) else 0

    cached = count("cache_read_input_tokens")
    prompt = count("input_tokens") + cached + count("cache_creation_input_tokens")
    completion = count("output_tokens")
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
