"""Arguments for a forced tool call that satisfy the tool's JSON Schema.

A translator under test often validates or re-serialises arguments, so the fake fills
every declared property with a value of the declared type rather than sending ``{}``.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

_WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel")
_MAX_DEPTH = 6


def sample_arguments(schema: Mapping[str, Any], seed: int) -> dict[str, Any]:
    """An object for ``schema`` (an object schema); the same seed gives the same object."""
    value = _sample(schema, random.Random(seed), "value", 0)
    return value if isinstance(value, dict) else {"value": value}


def _sample(schema: Mapping[str, Any], rng: random.Random, name: str, depth: int) -> Any:
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options and isinstance(options[0], Mapping):
            return _sample(options[0], rng, name, depth)
    kind = _type_of(schema)
    if kind == "object":
        if depth >= _MAX_DEPTH:
            return {}
        properties = schema.get("properties") or {}
        return {
            key: _sample(sub if isinstance(sub, Mapping) else {}, rng, key, depth + 1)
            for key, sub in properties.items()
        }
    if kind == "array":
        items = schema.get("items")
        if depth >= _MAX_DEPTH or not isinstance(items, Mapping):
            return []
        return [_sample(items, rng, name, depth + 1)]
    if kind == "integer":
        return rng.randint(1, 100)
    if kind == "number":
        return rng.randint(100, 10_000) / 100
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    return f"{name}-{rng.choice(_WORDS)}"


def _type_of(schema: Mapping[str, Any]) -> str:
    declared = schema.get("type")
    if isinstance(declared, list):
        declared = next((t for t in declared if t != "null"), "null")
    if isinstance(declared, str):
        return declared
    return "object" if "properties" in schema else "string"
