"""The one exception the fake's handlers raise to answer with an error.

Handlers and the request pipeline raise ``WireError`` with a status; the endpoint's
dialect (``propylon.testing.dialect``) renders it as OpenAI or Anthropic would.
"""

from __future__ import annotations

from collections.abc import Mapping


class WireError(Exception):
    """An error response: HTTP status, message, and optional OpenAI ``code``/``param``."""

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message or f"HTTP {status}")
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers: dict[str, str] = dict(headers or {})


def invalid_request(message: str, *, param: str | None = None) -> WireError:
    """A 400 for a request the real provider would reject as malformed."""
    return WireError(400, message, param=param)
