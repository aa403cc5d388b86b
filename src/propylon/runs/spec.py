"""What a run does: `POST /v1/runs` bodies normalised to a list of named steps.

    {"type": "chat",   "request": {chat completion body}}
    {"type": "answer", "collection": "docs", "question": "…"}   (+ "model", "top_k", "mode",
                                                                 "filter", as the answer API)
    {"type": "chain",  "steps": [{"name": "retrieve", "kind": "search", …}, …]}
    {"type": "agent",  "model": "…", "input": "…", "tools": […]}   (``agent_spec``)

Every step may carry `timeout_s` (default 120) and `retries` (default 1; null: the default).
A model step's request is checked as a chat completion body, a search step as a search body
(`query`, `top_k`, `mode`, `filter`), when the run is made. String fields of a step may refer to
earlier steps' outputs as `{{steps.NAME.FIELD}}`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from propylon.errors import InvalidRequest
from propylon.gateway.validation import validate_chat_request
from propylon.rag.chat import parse_answer
from propylon.rag.search import SearchRequest

DEFAULT_TOP_K = 5  # a search step's hits when it names no `top_k`
# What an answer step may set besides its question, as `POST /v1/collections/{id}/answer`.
ANSWER_OPTIONS = ("model", "top_k", "mode", "filter")

MAX_STEPS = 20
KIND_FIELDS: dict[str, tuple[str, ...]] = {
    "model": ("request",),
    "answer": ("collection", "question"),
    "search": ("collection", "query"),
    "guard": ("text",),
    "verify_citations": ("step",),
}
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
_REF = re.compile(r"\{\{\s*steps\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_]+)\s*\}\}")


def normalise(body: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """The run's kind and its steps; a malformed body is a 400 naming the field."""
    kind = body.get("type")
    steps: Any
    if kind == "chat":
        request = body.get("request")
        if not isinstance(request, dict):
            raise InvalidRequest("`request` must be a chat completion body.", param="request")
        steps = [{"name": "chat", "kind": "model", "request": request}]
    elif kind == "answer":
        options = {k: body[k] for k in ANSWER_OPTIONS if body.get(k) is not None}
        steps = [
            {
                "name": "answer",
                "kind": "answer",
                "collection": body.get("collection"),
                "question": body.get("question"),
                **options,
            }
        ]
    elif kind == "agent":
        return kind, []
    elif kind == "chain":
        steps = body.get("steps")
        check_chain(steps, "steps", inputs=())  # a chain run has no input to refer to
        return kind, [dict(step) for step in steps]
    else:
        raise InvalidRequest("`type` must be `chat`, `answer`, `chain` or `agent`.", param="type")
    _check_step("", steps[0], set())  # the step is the body: errors name the body's fields
    return kind, [dict(step) for step in steps]


def check_chain(steps: Any, where: str, inputs: tuple[str, ...] = ("input",)) -> None:
    """A chain's steps, checked; a malformed one is a 400 naming it (``where``: its field).
    ``inputs``: what its steps may refer to besides earlier steps (an agent's chain reads its
    input as ``{{steps.input.text}}``)."""
    if not isinstance(steps, list) or not steps:
        raise InvalidRequest(f"`{where}` must be a non-empty array of steps.", param=where)
    if len(steps) > MAX_STEPS:
        raise InvalidRequest(f"A chain has at most {MAX_STEPS} steps.", param=where)
    seen: set[str] = set(inputs)
    for index, step in enumerate(steps):
        _check_step(f"{where}[{index}]", step, seen)


def _check_step(where: str, step: Any, seen: set[str]) -> None:
    """One step, at ``where`` (``steps[2]``; ``""``: the step is the body itself)."""
    if not isinstance(step, dict):
        raise InvalidRequest(f"`{where}` must be an object.", param=where)
    name = step.get("name")
    if not isinstance(name, str) or not _NAME.match(name) or name in seen:
        raise InvalidRequest(
            f"`{_at(where, 'name')}` must be a unique name of letters, digits, `_` or `-`.",
            param=_at(where, "name"),
        )
    earlier = set(seen)
    seen.add(name)
    for ref in _refs(step):
        if ref[0] not in earlier:
            named = f"{{{{steps.{ref[0]}.{ref[1]}}}}}"
            raise InvalidRequest(
                f"`{where or 'the run'}` refers to {named}, which names no earlier step: a "
                "step reads the outputs of the steps before it.",
                param=where or None,
            )
    kind = step.get("kind")
    if not isinstance(kind, str) or kind not in KIND_FIELDS:
        raise InvalidRequest(
            f"`{_at(where, 'kind')}` must be one of {', '.join(KIND_FIELDS)}.",
            param=_at(where, "kind"),
        )
    for field in KIND_FIELDS[kind]:
        value = step.get(field)
        wanted = dict if field == "request" else str
        if not isinstance(value, wanted) or (wanted is str and not value):
            raise InvalidRequest(
                f"`{_at(where, field)}` is required for a `{kind}` step.",
                param=_at(where, field),
            )
    if kind == "model":
        _within(_at(where, "request"), validate_chat_request, step["request"])
    elif kind == "answer":
        _within(where, lambda s: parse_answer(s["collection"], s), step)
    elif kind == "search":
        _within(where, lambda s: SearchRequest.parse(s, default_top_k=DEFAULT_TOP_K), step)
    if kind == "verify_citations" and step["step"] not in seen - {name}:
        raise InvalidRequest(
            f"`{_at(where, 'step')}` must name an earlier step.", param=_at(where, "step")
        )
    for field, low, high, kinds in (
        ("timeout_s", 0.1, 3600, (int, float)),
        ("retries", 0, 5, (int,)),  # attempts are counted: 2.5 retries is not a number of them
    ):
        value = step.get(field)
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high
        ):
            kind = "a whole number" if kinds == (int,) else "a number"
            raise InvalidRequest(
                f"`{_at(where, field)}` must be {kind} in [{low}, {high}].",
                param=_at(where, field),
            )


def _within(where: str, check: Callable[[dict[str, Any]], object], body: dict[str, Any]) -> None:
    """``check(body)``, its ``InvalidRequest`` naming the field as part of ``where``."""
    try:
        check(body)
    except InvalidRequest as exc:
        param = _at(where, exc.param) if exc.param else where
        message = f"`{where}`: {exc.message}" if where else exc.message
        raise InvalidRequest(message, param=param or None) from None


def _at(where: str, field: str) -> str:
    """The name of ``field`` of the step at ``where``."""
    return f"{where}.{field}" if where else field


class MissingOutput(Exception):
    """A ``{{steps.NAME.FIELD}}`` whose step has no such output (the step names were checked
    when the run was made; the fields are known once the step ran)."""


def _refs(value: Any) -> list[tuple[str, str]]:
    """The ``(step, field)`` of every ``{{steps.NAME.FIELD}}`` in ``value``'s strings."""
    if isinstance(value, str):
        return [(m[1], m[2]) for m in _REF.finditer(value)]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs(item)]
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in _refs(item)]
    return []


def _output(outputs: dict[str, dict[str, Any]], step: str, field: str) -> str:
    found = outputs.get(step)
    if found is None or field not in found:
        has = ", ".join(sorted(found)) if found else "nothing"
        raise MissingOutput(
            f"{{{{steps.{step}.{field}}}}} names no output (step `{step}` has {has})."
        )
    return str(found[field])


def render(value: Any, outputs: dict[str, dict[str, Any]]) -> Any:
    """``value`` with every ``{{steps.NAME.FIELD}}`` replaced by that earlier output;
    ``MissingOutput`` when there is none."""
    if isinstance(value, str):
        return _REF.sub(lambda m: _output(outputs, m[1], m[2]), value)
    if isinstance(value, list):
        return [render(item, outputs) for item in value]
    if isinstance(value, dict):
        return {key: render(item, outputs) for key, item in value.items()}
    return value
