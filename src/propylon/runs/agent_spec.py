"""What an agent run is: `POST /v1/runs` with `"type": "agent"`, normalised and checked.

    {"type": "agent", "model": "gpt-4o", "instructions": "…", "input": "…",
     "tools": ["search", {"name": "http_get", "approval": "required"}],
     "limits": {"max_steps": 8, "max_tokens": 20000, "max_cost_usd": 0.5, "max_seconds": 300},
     "chains": {"summarise": [{"name": "s", "kind": "model", "request": {…}}]}}

`chains` are the chains the `run_chain` tool may run, by name: the run's author defines them
(a model only picks one and gives it an `input`, read by the steps as `{{steps.input.text}}`).

A model decides which tool to call; the worker runs the loop (``propylon.runs.agent``).
Which tools exist and who may hand them to an agent is ``propylon.runs.tools``.
"""

from __future__ import annotations

from typing import Any

from propylon.errors import InvalidRequest
from propylon.runs.spec import check_chain

LIMITS: dict[str, tuple[float, float, float]] = {
    # name: (default, lowest, highest)
    "max_steps": (10, 1, 50),
    "max_tokens": (100_000, 1, 10_000_000),
    "max_cost_usd": (5.0, 0.0, 1_000.0),
    "max_seconds": (600.0, 0.1, 86_400.0),
}
WHOLE_LIMITS = frozenset({"max_steps", "max_tokens"})
NOT_AGENTS = ("local/", "rag/")
"""Models that answer but cannot choose tools: the local extractive model, RAG answers."""


def normalise_agent(body: dict[str, Any]) -> dict[str, Any]:
    """The agent's spec: model, instructions, input, tools (name and approval) and limits."""
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("`model` is required for an agent run.", param="model")
    if model.startswith(NOT_AGENTS):
        raise InvalidRequest(
            f"`{model}` answers questions but cannot call tools, so it cannot drive an agent; "
            "choose a model that supports tool calling.",
            param="model",
            code="model_not_agentic",
        )
    text = body.get("input")
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("`input` (the user's request) is required.", param="input")
    instructions = body.get("instructions", "")
    if not isinstance(instructions, str):
        raise InvalidRequest("`instructions` must be a string.", param="instructions")
    chains = body.get("chains", {})
    if not isinstance(chains, dict):
        raise InvalidRequest("`chains` must map names to arrays of steps.", param="chains")
    for name, steps in chains.items():
        check_chain(steps, f"chains.{name}")
    return {
        "model": model,
        "instructions": instructions,
        "input": text,
        "tools": _tools(body.get("tools", [])),
        "limits": _limits(body.get("limits", {})),
        "chains": chains,
    }


def _tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise InvalidRequest("`tools` must be an array of tool names or objects.", param="tools")
    tools: list[dict[str, Any]] = []
    for index, item in enumerate(value):
        where = f"tools[{index}]"
        entry = {"name": item} if isinstance(item, str) else item
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise InvalidRequest(f"`{where}` must be a name or an object with `name`.", param=where)
        approval = entry.get("approval", "auto")
        if approval not in ("auto", "required"):
            raise InvalidRequest(
                f"`{where}.approval` must be `auto` or `required`.", param=f"{where}.approval"
            )
        if any(tool["name"] == entry["name"] for tool in tools):
            raise InvalidRequest(f"`{where}`: tool `{entry['name']}` is listed twice.", param=where)
        tools.append({"name": entry["name"], "approval": approval})
    return tools


def _limits(value: Any) -> dict[str, float]:
    if not isinstance(value, dict):
        raise InvalidRequest("`limits` must be an object.", param="limits")
    unknown = set(value) - set(LIMITS)
    if unknown:
        raise InvalidRequest(
            f"Unknown limit(s) {sorted(unknown)}; limits are {sorted(LIMITS)}.", param="limits"
        )
    limits: dict[str, float] = {}
    for name, (default, low, high) in LIMITS.items():
        given = value.get(name, default)
        counted = name in WHOLE_LIMITS  # steps and tokens are counted: 2.5 of them is not one
        if (
            isinstance(given, bool)
            or not isinstance(given, int | float)
            or not low <= given <= high
            or (counted and given != int(given))
        ):
            kind = "a whole number" if counted else "a number"
            raise InvalidRequest(
                f"`limits.{name}` must be {kind} in [{low:g}, {high:g}].", param=f"limits.{name}"
            )
        limits[name] = float(given)
    return limits
