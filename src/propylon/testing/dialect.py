"""How each provider renders errors and names its request ids.

OpenAI answers ``{"error": {"message", "type", "param", "code"}}``; Anthropic answers
``{"type": "error", "error": {"type", "message"}}``. A gateway's error translation is only
tested honestly if the fake fails in the provider's own shape, in bodies and mid-stream.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, Protocol

import orjson

from propylon.testing.event_stream import sse_event
from propylon.testing.wire_error import WireError


class Dialect(Protocol):
    """What differs between providers around the payload: errors, request ids, API keys."""

    request_id_header: str

    def new_request_id(self) -> str: ...

    def api_key(self, headers: Mapping[str, str]) -> str | None: ...

    def error_body(self, error: WireError) -> dict[str, Any]: ...

    def error_event(self, error: WireError) -> bytes: ...


_OPENAI_TYPES: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "permission_denied", "You may not access this resource."),
    404: ("invalid_request_error", "not_found", "The requested resource does not exist."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached. Please try again later."),
    500: (
        "server_error",
        None,
        "The server had an error while processing your request. Sorry about that!",
    ),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}

_ANTHROPIC_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use this resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Rate limit exceeded. Please try again later."),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timeout"),
    529: ("overloaded_error", "Overloaded"),
}


class OpenAIDialect:
    """OpenAI's error body; mid-stream errors are a ``data:`` line holding that body."""

    request_id_header = "x-request-id"

    def new_request_id(self) -> str:
        return "req_" + secrets.token_hex(16)

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        return _bearer(headers)

    def error_body(self, error: WireError) -> dict[str, Any]:
        fallback = "server_error" if error.status >= 500 else "invalid_request_error"
        kind, code, message = _OPENAI_TYPES.get(
            error.status, (fallback, None, f"The upstream answered {error.status}.")
        )
        return {
            "error": {
                "message": error.message or message,
                "type": kind,
                "param": error.param,
                "code": error.code or code,
            }
        }

    def error_event(self, error: WireError) -> bytes:
        return sse_event(orjson.dumps(self.error_body(error)))


class AnthropicDialect:
    """Anthropic's error body; mid-stream errors are an ``event: error``."""

    request_id_header = "request-id"

    def new_request_id(self) -> str:
        return "req_" + secrets.token_hex(12)

    def api_key(self, headers: Mapping[str, str]) -> str | None:
        """``x-api-key``, or a bearer token, which recent Anthropic SDKs send instead."""
        return headers.get("x-api-key") or _bearer(headers)

    def error_body(self, error: WireError) -> dict[str, Any]:
        fallback = "api_error" if error.status >= 500 else "invalid_request_error"
        kind, message = _ANTHROPIC_TYPES.get(error.status, (fallback, f"HTTP {error.status}"))
        return {"type": "error", "error": {"type": kind, "message": error.message or message}}

    def error_event(self, error: WireError) -> bytes:
        return sse_event(orjson.dumps(self.error_body(error)), event="error")


def _bearer(headers: Mapping[str, str]) -> str | None:
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    return token if scheme.lower() == "bearer" else None


OPENAI = OpenAIDialect()
ANTHROPIC = AnthropicDialect()
