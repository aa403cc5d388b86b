"""One row of the request log, as captured on the request path and rendered off it.

Capturing a record only copies references (the request's messages, the response) and
numbers; serialising, redacting, hashing and truncating the content happen in ``to_row``,
which the request log's background task calls when it writes a batch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from propylon.gateway.call import Attempt
from propylon.observe.redaction import REDACTED, redact
from propylon.storable import escape_row, json_text, jsonb_text

ContentPolicy = Literal["full", "hashed", "off"]

COLUMNS = (
    "created_at",
    "request_id",
    "tenant_id",
    "key_id",
    "key_prefix",
    "endpoint",
    "stream",
    "requested_model",
    "deployment",
    "attempts",
    "attempt_count",
    "status",
    "error_type",
    "error_code",
    "content_policy",
    "prompt",
    "response",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost_usd",
    "cost_saved_usd",
    "latency_ms",
    "ttft_ms",
    "overhead_ms",
    "upstream_ms",
    "cache_status",
    "cache_similarity",
    "guard",
    "metadata",
    "origin",
    "parent_id",
    "usage_estimated",
    "response_id",
    "headers",
)


@dataclass(slots=True)
class RequestRecord:
    """What happened to one ``/v1`` request."""

    request_id: str
    created_at: float  # epoch seconds, when the request arrived
    endpoint: str
    status: int
    latency_ms: float
    tenant_id: str | None = None
    key_id: str | None = None
    key_prefix: str | None = None
    stream: bool = False
    requested_model: str | None = None
    deployment: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    error_type: str | None = None
    error_code: str | None = None
    content_policy: ContentPolicy = "off"
    prompt: Any = None  # the raw messages / inputs; rendered by ``to_row``
    response: Any = None  # the answer's text, or its message objects
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int | None = None
    cost_usd: float | None = None
    cost_saved_usd: float | None = None  # a cache hit: what the upstream would have cost
    ttft_ms: float | None = None
    overhead_ms: float | None = None
    upstream_ms: float | None = None
    cache_status: str | None = None
    cache_similarity: float | None = None
    guard: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    origin: str = "user"  # or "internal": a call Propylon made for itself
    parent_id: str | None = None  # internal: the request or job it served
    usage_estimated: bool = False
    response_id: str | None = None  # the answer's id as the client saw it (``chatcmpl-…``)
    headers: dict[str, str] | None = None  # the ``x-propylon-*`` headers the client got

    @property
    def failed(self) -> bool:
        return self.error_type is not None

    def to_row(self, max_chars: int) -> tuple[Any, ...]:
        """The record as a row of ``COLUMNS``: JSON as text, content per its policy, every
        text and every string of a ``jsonb`` column (attempts, guard, headers) with what
        PostgreSQL cannot store (NUL, lone surrogates) escaped."""
        row = (
            datetime.fromtimestamp(self.created_at, UTC),
            self.request_id,
            self.tenant_id,
            self.key_id,
            self.key_prefix,
            self.endpoint,
            self.stream,
            self.requested_model,
            self.deployment,
            jsonb_text(
                [
                    {
                        "deployment": a.deployment,
                        "outcome": a.outcome,
                        "ms": round(a.duration_ms, 2),
                    }
                    for a in self.attempts
                ]
            ),
            sum(1 for a in self.attempts if a.outcome != "skipped"),
            self.status,
            self.error_type,
            self.error_code,
            self.content_policy,
            render_content(self.prompt, self.content_policy, max_chars),
            render_content(self.response, self.content_policy, max_chars),
            self.prompt_tokens,
            self.completion_tokens,
            self.cached_tokens,
            self.cost_usd,
            self.cost_saved_usd,
            round(self.latency_ms, 3),
            _round(self.ttft_ms),
            _round(self.overhead_ms),
            _round(self.upstream_ms),
            self.cache_status,
            self.cache_similarity,
            jsonb_text(self.guard) if self.guard else None,
            _redacted_json(self.metadata) if self.metadata is not None else None,
            self.origin,
            self.parent_id,
            self.usage_estimated,
            self.response_id,
            jsonb_text(self.headers) if self.headers else None,
        )
        return escape_row(row)


def render_content(value: Any, policy: ContentPolicy, max_chars: int) -> str | None:
    """Content as stored: redacted and cut (``full``), a SHA-256 (``hashed``), or nothing."""
    if value is None or policy == "off":
        return None
    if policy == "hashed":
        text = value if isinstance(value, str) else json_text(value)
        return "sha256:" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()
    # Cut before serialising and redacting (bounded work: an 8 MB prompt costs what a short one
    # does), with slack so a secret at the edge is still matched.
    limit = max_chars + 256
    text = value[:limit] if isinstance(value, str) else json_text(_clipped(value, limit))
    return redact(text[:limit])[:max_chars]


def _clipped(value: Any, limit: int, depth: int = 0) -> Any:
    """``value`` with every string cut to ``limit`` characters (no string longer than the
    stored text can show is serialised)."""
    if isinstance(value, str):
        return value[:limit] if len(value) > limit else value
    if depth > 32:  # deeper than any chat message: left as it is
        return value
    if isinstance(value, list):
        return [_clipped(item, limit, depth + 1) for item in value]
    if isinstance(value, dict):
        return {key: _clipped(item, limit, depth + 1) for key, item in value.items()}
    return value


def _redacted_json(metadata: dict[str, Any]) -> str:
    """The caller's labels as JSON with key-shaped strings (and ``"api_key": …`` values)
    replaced: a key sent as a label is not stored either. Should a replacement span two
    strings and break the JSON, every label that holds a secret is replaced whole."""
    text = json_text(metadata)
    redacted = redact(text)
    if redacted == text:
        return text
    try:
        orjson.loads(redacted)
    except orjson.JSONDecodeError:
        return json_text({k: REDACTED if _holds_secret(v) else v for k, v in metadata.items()})
    return redacted


def _holds_secret(value: Any) -> bool:
    text = json_text(value)
    return redact(text) != text


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
