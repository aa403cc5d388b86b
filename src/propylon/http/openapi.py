"""OpenAPI fragments for routes that parse their body by hand (the hot path skips pydantic)."""

from __future__ import annotations

from typing import Any

JSON_OBJECT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}
