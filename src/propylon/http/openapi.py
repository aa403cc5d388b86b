"""OpenAPI fragments for routes that parse their body by hand (the hot path skips pydantic)."""

from __future__ import annotations

from typing import Any

JSON_OBJECT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}

RERANK_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model", "query", "documents"],
                    "properties": {
                        "model": {"type": "string"},
                        "query": {"type": "string"},
                        "documents": {
                            "type": "array",
                            "items": {
                                "anyOf": [
                                    {"type": "string"},
                                    {
                                        "type": "object",
                                        "required": ["text"],
                                        "properties": {"text": {"type": "string"}},
                                    },
                                ]
                            },
                        },
                        "top_n": {"type": "integer"},
                        "return_documents": {"type": "boolean"},
                    },
                }
            }
        },
    }
}
