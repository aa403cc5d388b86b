"""How the fake upstream behaves: pacing, completion length, and injected faults.

One ``Behaviour`` is set at construction, can be replaced at run time
(``POST /_fake/behaviour`` or ``FakeUpstream.set_behaviour``), and can be overridden for one
request with the ``x-fake-behaviour: <json>`` header, whose fields replace the server's.
The same JSON shape serves all three, so a test, a benchmark and a shell user speak alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FaultKind = Literal["status", "rate_limit", "timeout", "reset", "stream_cut", "stream_error"]

DEFAULT_MODELS = ("fake-gpt", "fake-embedding", "fake-claude")

STREAM_FAULTS: frozenset[FaultKind] = frozenset({"stream_cut", "stream_error"})
"""Faults that strike inside an event stream, so only streaming requests match them."""


class Fault(BaseModel):
    """One injected failure, and which requests it strikes.

    Kinds:
      ``status``       answer ``status`` with an error body in the endpoint's dialect;
      ``rate_limit``   answer 429 with ``Retry-After: retry_after_s``;
      ``timeout``      send nothing for ``hang_s``, then drop the connection;
      ``reset``        reset the TCP connection before any response;
      ``stream_cut``   send ``after_chunks`` events, then close without finishing the body;
      ``stream_error`` send ``after_chunks`` events, then an in-stream error event and end.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: FaultKind
    status: int = Field(
        default=500,
        ge=400,
        le=599,
        description="HTTP status of `status`, error type of `stream_error`.",
    )
    message: str | None = Field(
        default=None, description="Error message; a default fits each status."
    )
    retry_after_s: float = Field(
        default=1.0, ge=0, description="Seconds in `Retry-After` of `rate_limit`."
    )
    hang_s: float = Field(
        default=300.0, ge=0, description="How long `timeout` hangs before dropping."
    )
    after_chunks: int = Field(
        default=0, ge=0, description="Events sent before `stream_cut` or `stream_error` strikes."
    )
    times: int | None = Field(
        default=None, ge=0, description="Strike only the first N matching requests; null: always."
    )
    endpoints: tuple[str, ...] = Field(
        default=(), description="Paths it strikes, e.g. `/v1/chat/completions`; empty: all."
    )
    models: tuple[str, ...] = Field(
        default=(), description="Request models it strikes; empty: all."
    )

    def matches(self, endpoint: str, model: str | None, stream: bool) -> bool:
        """Whether this fault applies to a request, ignoring its remaining budget."""
        if self.kind in STREAM_FAULTS and not stream:
            return False
        if self.endpoints and endpoint not in self.endpoints:
            return False
        return not self.models or model in self.models


class ScriptedCall(BaseModel):
    """One more tool call in a scripted answer that calls several tools at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tool: str = Field(description="The tool (it must be among the request's tools).")
    arguments: dict[str, Any] = Field(default_factory=dict, description="Its arguments.")


class ScriptedTurn(BaseModel):
    """One answer of a scripted conversation: text, or a call of one tool.

    The answer to a request whose messages hold N assistant turns is ``script[N]``, so an
    agent loop under test meets the same conversation every time, in either dialect.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str | None = Field(default=None, description="The answer's text.")
    tool: str | None = Field(
        default=None, description="Call this tool (it must be among the request's tools)."
    )
    arguments: dict[str, Any] = Field(
        default_factory=dict, description="The tool call's arguments."
    )
    parallel: tuple[ScriptedCall, ...] = Field(
        default=(), description="Further tools called in the same answer (parallel calls)."
    )
    delay_ms: float = Field(default=0.0, ge=0, description="Extra delay before this answer.")


class Behaviour(BaseModel):
    """Everything a test may tune about the fake upstream; defaults answer at once."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: float = Field(default=0.0, ge=0, description="Delay before the response headers.")
    ttft_ms: float = Field(
        default=0.0,
        ge=0,
        description="Delay between response headers and the first streamed event.",
    )
    tokens_per_second: float = Field(
        default=0.0, ge=0, description="Pace of streamed tokens; 0 sends them as fast as possible."
    )
    completion_tokens: int = Field(
        default=16, ge=1, description="Length of an answer when `max_tokens` does not cut it."
    )
    embedding_dimensions: int = Field(
        default=384, ge=1, description="Vector size when the request gives no `dimensions`."
    )
    report_usage: bool = Field(
        default=True,
        description="False: OpenAI-dialect answers (chat, Responses) carry no `usage` and "
        "streams ignore "
        "`stream_options.include_usage`, as some OpenAI-compatible servers do.",
    )
    require_api_key: str | None = Field(
        default=None, description="When set, requests bearing another key get 401."
    )
    models: tuple[str, ...] = Field(
        default=DEFAULT_MODELS,
        description="Models listed by `GET /v1/models`; any model is served.",
    )
    script: tuple[ScriptedTurn, ...] = Field(
        default=(),
        description="Answers by turn, for requests that offer tools (an agent's model): a "
        "request with N assistant messages gets `script[N]`; past its end, the usual echo.",
    )
    obey_tool_results: bool = Field(
        default=False,
        description="A tool result that says `CALL_TOOL <name> <json arguments>` makes the "
        "model call that tool, as a model fooled by an injected instruction would.",
    )
    leak_system_prompt: bool = Field(
        default=False,
        description="Answer with the request's system prompt (chat's system messages, "
        "Anthropic's `system`, the Responses API's `instructions`) word for word, as a model "
        "fooled by a prompt-extraction attack does.",
    )
    faults: tuple[Fault, ...] = Field(
        default=(),
        description="Checked in order; the first matching fault with budget left strikes.",
    )

    @classmethod
    def from_json(cls, data: str | bytes) -> Behaviour:
        """Parse the JSON accepted by the control endpoint and the CLI."""
        return cls.model_validate_json(data)

    def overridden_by(self, fields: Mapping[str, Any]) -> Behaviour:
        """This behaviour with some fields replaced, validated like a whole one."""
        return Behaviour.model_validate({**self.model_dump(), **fields})

    def non_stream_delay_s(self, completion_tokens: int) -> float:
        """Seconds a non-streamed answer takes to generate, sent all at once afterwards."""
        generation = completion_tokens / self.tokens_per_second if self.tokens_per_second else 0.0
        return self.ttft_ms / 1000 + generation
