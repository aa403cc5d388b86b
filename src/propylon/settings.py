"""The one place configuration is read.

Sources, highest priority first: explicit overrides (CLI flags), ``PROPYLON_*`` environment
variables (plus the conventional ``DATABASE_URL`` and ``REDIS_URL``), the YAML file named by
``--config`` / ``PROPYLON_CONFIG``, then the defaults below. ``load_settings`` builds the
object once at start; everything else receives it (or the part it needs) as an argument.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AliasChoices, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from propylon.sealed import parse_key


class DeploymentConfig(BaseModel):
    """One concrete upstream that can serve a public model."""

    model_config = {"extra": "forbid"}

    provider: str = Field(
        description="Provider type: a key of the provider table (`openai`, `anthropic`, `local`)."
    )
    base_url: str | None = Field(
        default=None,
        description="Root URL of the upstream API, e.g. `https://api.openai.com/v1`.",
    )
    model: str | None = Field(
        default=None,
        description="Model name sent upstream; defaults to the public model name.",
    )
    api_key_env: str | None = Field(
        default=None,
        description="Name of the environment variable that holds this upstream's API key.",
    )
    api_version: str | None = Field(
        default=None,
        description="Azure OpenAI `api-version` query parameter (Azure deployments only).",
    )
    name: str | None = Field(
        default=None,
        description="Display name of the deployment in headers and logs; defaults to "
        "`provider/model`.",
    )
    native_apis: list[Literal["responses"]] = Field(
        default_factory=list,
        description="Client APIs this OpenAI-compatible upstream speaks itself: `responses` "
        "forwards `POST /v1/responses` bodies as they come (passthrough: Responses-only "
        "fields such as `reasoning`, `include`, `truncation` survive) instead of translating "
        "them through chat. Anthropic deployments always take `/v1/messages` natively.",
    )
    weight: float = Field(default=1.0, gt=0, description="Share of traffic under `weighted`.")
    connect_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to open a connection (nothing sent yet)."
    )
    first_token_timeout: float = Field(
        default=30.0,
        gt=0,
        description="Streams only: seconds from sending the request to the first event.",
    )
    idle_timeout: float = Field(
        default=60.0, gt=0, description="Streams only: longest silence between two events."
    )
    response_timeout: float = Field(
        default=600.0,
        gt=0,
        validation_alias=AliasChoices("response_timeout", "total_timeout"),
        description="Non-streamed calls: seconds from sending the request to the whole "
        "answer (reasoning models may think for minutes). `total_timeout` is its old name.",
    )

    @property
    def display_name(self) -> str:
        return self.name or f"{self.provider}/{self.model or '?'}"

    def api_key(self) -> SecretStr | None:
        """The key, read from the environment variable named in the config."""
        if not self.api_key_env:
            return None
        value = os.environ.get(self.api_key_env)
        return SecretStr(value) if value else None


class ModelConfig(BaseModel):
    """A public model name and the deployments that can serve it."""

    model_config = {"extra": "forbid"}

    name: str = Field(description="Public model name clients send in `model`.")
    deployments: list[DeploymentConfig] = Field(
        min_length=1, description="Upstreams able to serve this model, in fallback order."
    )
    strategy: Literal["fallback", "weighted"] = Field(
        default="fallback",
        description="`fallback`: try deployments in order; `weighted`: pick by weight, then "
        "fall back to the rest.",
    )
    aliases: list[str] = Field(default_factory=list, description="Other names for this model.")
    context_window: int | None = Field(
        default=None, gt=0, description="Tokens the model accepts (prompt + completion)."
    )
    kind: Literal["chat", "embeddings", "rerank"] = Field(
        default="chat",
        description="What the model serves: chat, embeddings, or `rerank` (`POST /v1/rerank`: "
        "deployments that speak the Cohere/Jina/vLLM `/rerank` API, or `local`).",
    )

    @model_validator(mode="after")
    def _default_upstream_model(self) -> ModelConfig:
        for deployment in self.deployments:
            if deployment.model is None:
                deployment.model = self.name
        return self

    @property
    def open_to_every_key(self) -> bool:
        """Served only by the local offline provider (nothing is paid upstream): every valid
        key may use it, whatever its `models`."""
        return all(d.provider == "local" for d in self.deployments)


class RetrySettings(BaseModel):
    """Retries on one deployment before falling back to the next."""

    model_config = {"extra": "forbid"}

    attempts: int = Field(
        default=2, ge=1, description="Calls to one deployment per request, the first included."
    )
    base_delay_s: float = Field(
        default=0.05, ge=0, description="Backoff before the 2nd call; doubles each time (jittered)."
    )
    max_delay_s: float = Field(default=2.0, ge=0, description="Cap on one backoff.")
    max_retry_after_s: float = Field(
        default=5.0,
        ge=0,
        description="Longest upstream `Retry-After` waited for; longer ones fall back at once.",
    )
    timeouts: Literal["retry", "fallback", "fail"] = Field(
        default="fallback",
        description="After a first-token or response timeout, when the upstream may have "
        "done (and billed) the work: `retry` the same deployment like any failure, "
        "`fallback` to the next deployment only, or `fail` at once. A connect timeout "
        "(nothing sent) is always retried.",
    )


class BreakerSettings(BaseModel):
    """The circuit breaker each deployment has."""

    model_config = {"extra": "forbid"}

    window_s: float = Field(default=30.0, gt=0, description="Sliding window of outcomes.")
    min_calls: int = Field(
        default=5, ge=1, description="Calls in the window before the breaker may open."
    )
    failure_ratio: float = Field(
        default=0.5, gt=0, le=1, description="Share of failed calls in the window that opens it."
    )
    cooldown_s: float = Field(
        default=15.0, gt=0, description="Seconds open before a half-open probe is let through."
    )


class CacheSettings(BaseModel):
    """The response cache in front of the gateway: exact (hash of the request) and semantic
    (embedding of the last user message, searched inside a hard scope)."""

    model_config = {"extra": "forbid"}

    enabled: bool = Field(default=True, description="Look up and store chat responses.")
    ttl_s: int = Field(default=3600, ge=1, description="Seconds a cached answer is served.")
    max_ttl_s: int = Field(
        default=7 * 86400,
        ge=1,
        description="Longest TTL a request may ask for (`propylon.cache.ttl`).",
    )
    nondeterministic: bool = Field(
        default=False,
        description="Also cache requests that are not deterministic (no `temperature: 0` and no "
        "`seed`). Off: such requests are cached only when they opt in.",
    )
    exact_max_entries: int = Field(
        default=10_000, ge=1, description="Entries of the in-process exact cache (without Redis)."
    )
    max_entry_bytes: int = Field(
        default=256 * 1024, ge=1, description="Larger responses are not cached."
    )
    redis_prefix: str = Field(
        default="propylon:cache:", description="Prefix of the exact cache's keys in `redis_url`."
    )
    redis_timeout_s: float = Field(
        default=0.1, gt=0, description="Seconds one Redis operation may take before it is a miss."
    )
    redis_retry_s: float = Field(
        default=5.0, ge=0, description="After a Redis failure, seconds it is skipped (misses)."
    )
    semantic: bool = Field(
        default=True, description="Serve answers to paraphrases of cached questions."
    )
    semantic_embedder: str | None = Field(
        default=None,
        description="Embeddings model (a configured `kind: embeddings` model) for the semantic "
        "cache. Unset: the local all-MiniLM-L6-v2.",
    )
    semantic_threshold: float = Field(
        default=0.80,
        gt=0,
        le=1,
        description="Cosine similarity from which a cached question is a candidate for a new "
        "one; the second check (`semantic_verify`) then decides (see docs/benchmarks.md, "
        "Semantic cache precision).",
    )
    semantic_first_stage: bool = Field(
        default=True,
        description="Search by the question's static vector first (`local/static.py`, tens of "
        "microseconds): the embedder reads a question, and the cached questions near it, only "
        "when one comes within `semantic_first_threshold`, so a miss costs no embedder call and "
        "storing an answer none either. Off: every lookup embeds the question.",
    )
    semantic_first_threshold: float = Field(
        default=0.85,
        gt=-1,
        le=1,
        description="Cosine of static vectors from which a cached question is read by the "
        "embedder. Lower: closer to the full path, more embedder calls. The dev-pair rule "
        "(keep 99.5 % of the full path's hits) gives 0.90, which loses contractions such as "
        '"What\'s" / "What is" (static cosine 0.898); see docs/benchmarks.md, Semantic '
        "cache first stage.",
    )
    semantic_index_entries: int = Field(
        default=50_000,
        ge=0,
        description="Behind the first stage, each replica keeps the static vectors (and "
        "questions) of up to this many entries in memory (1-2 KB each plus the question), "
        "so a miss reads no database (a scope of 8,000 entries and more is searched through "
        "an HNSW graph of its own, up to 1.7 KB more an entry); past it, the database "
        "searches, and the first such search has its HNSW index of static vectors built "
        "(kept from then on: ~0.3 ms of PostgreSQL per new entry). Another replica's entries "
        "are found at most `semantic_index_refresh_s` after they are written. 0: always "
        "search the database.",
    )
    semantic_index_refresh_s: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between two reads of the entries other replicas wrote into the "
        "in-memory first-stage index (one statement, read by the next lookup after it).",
    )
    semantic_thresholds: dict[str, float] = Field(
        default_factory=dict, description="Per-model thresholds (public model name -> similarity)."
    )
    semantic_verify: bool = Field(
        default=True,
        description="Second check on a semantic candidate: a model fitted on labelled question "
        "pairs weighs the cosine with numbers, negation, question word, names, shared words "
        "and lengths, and refuses candidates unlikely to have the same answer. Off: cosine "
        "alone decides (raise `semantic_threshold` then).",
    )
    semantic_min_probability: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Probability of 'same answer' the second check needs. Unset: the value "
        "chosen with the shipped weights (at most 1 % of hits wrong on the dev pairs of the "
        "sources they were fitted on; docs/benchmarks.md gives the error on sources held out). "
        "An entry's own threshold, learnt from sampled verifications, may only be higher.",
    )
    semantic_verify_share: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Share of would-be semantic hits answered by the upstream anyway and "
        "compared with the cached answer (vCache's sampling). The client gets the fresh "
        "answer; `/v1/stats` reports the share that disagreed (`semantic_observed_wrong_rate`) "
        "and its 95 % upper bound, and each verdict tightens (wrong) or eases (agree) that "
        "entry's own threshold, stored with the entry for every replica.",
    )
    semantic_agreement: float = Field(
        default=0.90,
        gt=0,
        le=1,
        description="Cosine of the two answers' embeddings from which a sampled verification "
        "counts them as the same answer (identical texts always agree).",
    )
    semantic_timeout_s: float = Field(
        default=0.5, gt=0, description="Budget of one semantic lookup (embedding + search)."
    )
    semantic_max_chars: int = Field(
        default=2000, ge=1, description="Longer last user messages skip the semantic cache."
    )
    record_lookups: bool = Field(
        default=True,
        description="Record the best similarity of every semantic lookup (`cache_lookups`) to "
        "tune thresholds from real traffic.",
    )
    model_salts: dict[str, str] = Field(
        default_factory=dict,
        description="Version salt per public model name; changing it invalidates that model's "
        "cached answers.",
    )


class JobsSettings(BaseModel):
    """The durable job queue and its workers (see docs/architecture.md, Jobs)."""

    model_config = {"extra": "forbid"}

    in_process_worker: bool | None = Field(
        default=None,
        description="Run a worker inside `propylon serve`. Unset: on with the embedded database "
        "(no `DATABASE_URL`), off otherwise (run `propylon worker` processes).",
    )
    concurrency: int = Field(default=4, ge=1, description="Jobs one worker runs at once.")
    tenant_concurrency: int | None = Field(
        default=None,
        ge=1,
        description="Jobs one tenant may have running at once, across every worker. Unset: no "
        "cap. Either way workers claim fairly: the next job is the oldest due one of the tenant "
        "with the fewest running, so one tenant's backlog delays others by at most one job.",
    )
    lease_s: float = Field(
        default=30.0,
        gt=0,
        description="A running job's lease; a worker silent this long (killed, frozen) loses "
        "the job, which is then run again.",
    )
    heartbeat_s: float = Field(
        default=5.0, gt=0, description="How often a worker renews the leases of its jobs."
    )
    reap_interval_s: float = Field(
        default=5.0, gt=0, description="How often a worker requeues jobs whose lease expired."
    )
    poll_interval_s: float = Field(
        default=2.0,
        gt=0,
        description="Longest wait between looks for due jobs (new jobs wake workers at once).",
    )
    retry_base_s: float = Field(
        default=2.0, ge=0, description="Backoff before a failed job's 2nd attempt; doubles."
    )
    retry_max_s: float = Field(default=300.0, ge=0, description="Cap on one backoff.")
    shutdown_grace_s: float = Field(
        default=8.0,
        ge=0,
        description="On SIGTERM, seconds running jobs may finish before they are requeued.",
    )
    cancel_wait_s: float = Field(
        default=5.0,
        ge=0,
        description="`POST /v1/jobs/{id}/cancel` waits this long for a running job to stop.",
    )
    progress_interval_s: float = Field(
        default=0.2,
        ge=0,
        description="Progress updates within one stage are written at most this often.",
    )

    @model_validator(mode="after")
    def _heartbeat_within_lease(self) -> JobsSettings:
        if self.heartbeat_s >= self.lease_s:
            raise ValueError("jobs.heartbeat_s must be shorter than jobs.lease_s")
        return self


class AgentSettings(BaseModel):
    """Agent runs (`POST /v1/runs` with `"type": "agent"`): what their tools may reach."""

    model_config = {"extra": "forbid"}

    http_get_hosts: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Hosts (`host` or `host:port`) the `http_get` tool may fetch from, by "
        "tenant name; the entry `*` applies to every tenant. Empty: `http_get` reaches nothing.",
    )
    mcp_stdio_commands: list[str] = Field(
        default_factory=list,
        description="Executables tenants may register as stdio MCP servers (they run on the "
        "workers, as the worker's user). Empty: only streamable HTTP MCP servers.",
    )
    mcp_url_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts streamable HTTP MCP servers may be at even though they resolve to "
        "loopback or private addresses (an MCP server on the machine or the intranet); `*` "
        "allows any. Other hosts must resolve only to public addresses: a tenant admin cannot "
        "point the workers at the operator's network.",
    )

    def hosts_for(self, tenant_name: str) -> frozenset[str]:
        return frozenset(self.http_get_hosts.get(tenant_name, [])) | frozenset(
            self.http_get_hosts.get("*", [])
        )


class ModelPrice(BaseModel):
    """What one model costs, in USD per million tokens."""

    model_config = {"extra": "forbid"}

    input: float = Field(ge=0, description="USD per million prompt tokens.")
    output: float = Field(ge=0, description="USD per million completion tokens.")
    cached_input: float | None = Field(
        default=None, ge=0, description="USD per million cached prompt tokens; unset: `input`."
    )


class ObserveSettings(BaseModel):
    """The request log, metrics and traces."""

    model_config = {"extra": "forbid"}

    content_logging: Literal["full", "hashed", "off"] = Field(
        default="full",
        description="What the request log keeps of prompts and responses: `full` (secrets "
        "redacted), `hashed` (SHA-256 only) or `off`.",
    )
    tenant_content_logging: dict[str, Literal["full", "hashed", "off"]] = Field(
        default_factory=dict,
        description="Per-tenant override of `content_logging` (tenant id or name -> policy).",
    )
    max_content_chars: int = Field(
        default=32_768, ge=0, description="Prompts and responses are cut to this many characters."
    )
    buffer_size: int = Field(
        default=10_000,
        ge=1,
        description="Records held in memory while waiting to be written (e.g. database down); "
        "past it new records are dropped and counted.",
    )
    batch_size: int = Field(default=500, ge=1, description="Records written by one COPY.")
    flush_interval_s: float = Field(
        default=1.0, gt=0, description="Seconds between writes of the request log."
    )
    retention_days: float = Field(
        default=30, ge=0, description="Request log rows older than this are deleted; 0: kept."
    )
    tenant_retention_days: dict[str, Annotated[float, Field(ge=0)]] = Field(
        default_factory=dict,
        description="Per-tenant override of `retention_days` (tenant id -> days; 0: kept).",
    )
    retention_interval_s: float = Field(
        default=3600, gt=0, description="Seconds between two retention deletions."
    )
    logs_query_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="A `GET /v1/logs` query (the console's explorer) running longer than this "
        "is stopped and answered with a 400 (`search_too_broad`) asking for a narrower time "
        "window or filters, instead of holding a connection for as long as it takes.",
    )
    store_traces: bool = Field(
        default=True,
        description="Keep the spans of every request, run and ingestion job in PostgreSQL "
        "(the console's waterfall, `GET /v1/traces`), written in batches off the request path "
        "with the request log's `buffer_size`, `batch_size` and `flush_interval_s` (past the "
        "buffer spans are dropped and counted) and deleted with the request log's rows.",
    )
    access_log: bool = Field(default=True, description="One JSON log line per HTTP request.")
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="Price per public model name, for the cost of each request.",
    )


class AccessSettings(BaseModel):
    """API keys, rate limits and budgets (per-key and per-tenant values live in the database)."""

    model_config = {"extra": "forbid"}

    default_rpm: int | None = Field(
        default=None,
        gt=0,
        description="Requests per minute of a key that sets none; unset: no cap.",
    )
    default_tpm: int | None = Field(
        default=None, gt=0, description="Tokens per minute of a key that sets none; unset: no cap."
    )
    completion_estimate: int = Field(
        default=256,
        ge=0,
        description="Completion tokens reserved for a chat request without `max_tokens`; "
        "settled with the real usage afterwards.",
    )
    cache_hits_count_rpm: bool = Field(
        default=True,
        description="Whether an answer served from the response cache counts against "
        "requests-per-minute limits (it never counts against token limits or budgets).",
    )
    internal_counts_against_budget: bool = Field(
        default=True,
        description="Whether the calls Propylon makes for a key's request (`origin: internal`: "
        "RAG's conversation summaries and query embeddings, the embeddings of a document the "
        "key uploaded) count against the key's and its tenant's token and dollar budgets "
        "(they never count against RPM/TPM limits). Either way they are recorded as their own "
        "series in the request log, `/v1/stats` and the key's usage. Default true: they are paid "
        "upstream calls the tenant's requests caused, and a budget caps that spend.",
    )
    redis_fail_open: bool = Field(
        default=True,
        description="With Redis unreachable: admit requests (true, with a warning and a "
        "counter) or refuse them with 503 (false).",
    )
    redis_prefix: str = Field(
        default="propylon:rl:", description="Prefix of the rate-limit keys in Redis."
    )
    redis_timeout_s: float = Field(
        default=0.5, gt=0, description="Seconds to wait for Redis before it counts as down."
    )
    redis_connections: int = Field(
        default=16, ge=1, description="Connections to Redis per process for rate limits."
    )
    key_lookup_timeout_s: float = Field(
        default=1.0,
        gt=0,
        description="Seconds to look up a key not yet in memory; past it the key is unknown (401).",
    )
    key_reload_s: float = Field(
        default=30.0,
        gt=0,
        description="Seconds between full reloads of every key, beside the change "
        "notifications: the longest a missed revocation can go unseen by a replica.",
    )
    usage_flush_s: float = Field(
        default=1.0,
        gt=0,
        description="How often spend counted in memory is written to the database.",
    )


class GuardPolicy(BaseModel):
    """What the guard does with a verdict, for one route or tenant."""

    model_config = {"extra": "forbid"}

    user_action: Literal["block", "flag", "sanitize", "off"] = Field(
        default="block",
        description="On a high-confidence injection in user messages: `block` (400 "
        "`prompt_injection_detected`), `flag` (pass, record), `sanitize` (strip hidden "
        "characters and the offending sentences, pass), `off` (do not scan). Suspicious "
        "scores below the block threshold are always only flagged.",
    )
    retrieved_action: Literal["block", "flag", "sanitize", "off"] = Field(
        default="flag",
        description="The same for retrieved text reaching the model (`tool` messages).",
    )
    canary: bool = Field(
        default=True,
        description="Append a fresh random canary (and `guard.canary`, when set) to every "
        "request's system prompt; an answer containing it is withheld (400 `canary_leaked`). "
        "The client never sees the canary.",
    )
    output_checks: bool = Field(
        default=True,
        description="Scan answers for leaked secrets, the canaries and passages of the system "
        "prompt. Off: none of the output checks, and no canary.",
    )
    leak_overlap_words: int = Field(
        default=12,
        ge=0,
        description="An answer repeating this many consecutive words of the system prompt "
        "(case and punctuation aside) is withheld (400 `system_prompt_leaked`). 0: off.",
    )


class GuardSettings(BaseModel):
    """Prompt-injection detection, canary tokens and output checks (the guard stage)."""

    model_config = {"extra": "forbid"}

    enabled: bool = Field(default=True, description="Run the guard stage at all.")
    classifier: bool = Field(
        default=True,
        description="Run the MiniLM classifier after the heuristics (about 5 ms of CPU per "
        "short new message; verdicts are cached by text), and on every chunk at ingestion. "
        "Off: heuristics only.",
    )
    first_stage: bool = Field(
        default=True,
        description="Score user input with the classifier's static first stage "
        "(`guard/first_stage.py`: a head on the static embedding, tens of microseconds) and run "
        "MiniLM only for windows it does not find clearly benign. Off: MiniLM reads every "
        "window. On held-out sources it loses 0.2 points of balanced accuracy against MiniLM "
        "alone and sends MiniLM about 28 % of benign windows (docs/benchmarks.md).",
    )
    user_int8: bool = Field(
        default=True,
        description="MiniLM reads user input (the windows the first stage defers, or every "
        "window without it) with int8 kernels first: a model of its own, loaded on first use "
        "(about 28 MB beside the exact one), at about 60 % of the CPU a window. A window whose "
        "int8 score lies within `REREAD_MARGIN` (0.7 logits) of the flag or block threshold is "
        "read again by the exact model, so held out every source's decisions were the exact "
        "ones (docs/benchmarks.md). Retrieved text, the semantic cache and the context engine "
        "keep the exact model. Nothing changes when `local_int8` is on (one int8 model serves "
        "all).",
    )
    retrieved_classifier: bool = Field(
        default=False,
        description="Also run the classifier on retrieved text inside requests (tool results, "
        "context-engine sources): one embedding per line or sentence, about 5 ms each. Off: "
        "heuristics only there. Ingested documents are always screened with the classifier "
        "(once per chunk, at ingestion) while `classifier` is on.",
    )
    user_flag_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="User-input score from which a message is flagged. Unset: the value "
        "calibrated when the weights were trained.",
    )
    user_block_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="User-input score of a high-confidence injection, blocked when the "
        "heuristics corroborate it (their score ≥ 0.5; else flagged). Unset: calibrated.",
    )
    retrieved_flag_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Retrieved-text score from which it is flagged. Unset: calibrated.",
    )
    retrieved_block_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Retrieved-text score of a high-confidence injection. Unset: calibrated.",
    )
    default: GuardPolicy = Field(
        default_factory=GuardPolicy, description="Policy of routes and tenants not listed."
    )
    routes: dict[str, GuardPolicy] = Field(
        default_factory=dict, description="Policy per route (`chat`, `rag`…)."
    )
    tenants: dict[str, GuardPolicy] = Field(
        default_factory=dict,
        description="Policy per tenant id or name; wins over the route's.",
    )
    canary: SecretStr | None = Field(
        default=None,
        description="A fixed canary token placed in system prompts next to the per-request "
        "one (to find leaks in logs elsewhere); an answer containing it is withheld (400 "
        "`canary_leaked`) and logged. Unset: only the per-request canary.",
    )
    max_windows: int = Field(
        default=32,
        ge=1,
        description="Windows of one long message the classifier reads (600 characters each "
        "for user input, 250 for retrieved text).",
    )
    max_scan_chars: int = Field(
        default=32_768,
        ge=1024,
        description="Characters of one request the guard reads (heuristics and classifier), "
        "shared among its messages: short messages are read whole, and each long one by its "
        "beginning and end. Bounds the CPU an oversized prompt costs (about 5 ms per 32 K).",
    )


class SourcesSettings(BaseModel):
    """Sources that keep collections in sync (`POST /v1/collections/{id}/sources`)."""

    model_config = {"extra": "forbid"}

    folder_roots: list[str] = Field(
        default_factory=list,
        description="Directories (on the workers) under which `folder` sources may read; a "
        "folder elsewhere, or a file reached through a link leaving its root, is refused. "
        "Empty: no folder sources.",
    )
    url_hosts: list[str] = Field(
        default_factory=list,
        description="Hosts `url` sources may fetch even though they resolve to loopback or "
        "private addresses (an intranet); `*` allows any. Other hosts must resolve only to "
        "public addresses.",
    )
    max_pages: int = Field(
        default=1000, ge=1, description="Most pages one `url` source crawls in one sync."
    )
    requests_per_s: float = Field(
        default=2.0,
        gt=0,
        description="Polite rate of one `url` source's requests to its site (robots.txt's "
        "Crawl-delay, when longer, wins).",
    )
    timeout_s: float = Field(default=30.0, gt=0, description="Seconds one fetch may take.")
    min_interval_s: int = Field(
        default=60, ge=1, description="Shortest schedule (`interval_s`) a source may ask for."
    )
    user_agent: str = Field(
        default="propylon-sync", description="User-agent sent to sites and matched in robots.txt."
    )
    secrets_key: SecretStr | None = Field(
        default=None,
        description="Key (32 bytes in base64: `openssl rand -base64 32`) with which an `s3` "
        "source's secret key is sealed (AES-256-GCM) before it is stored in PostgreSQL; every "
        "process that serves or syncs sources needs the same one. Unset: `s3` sources cannot "
        "be made (400 naming this setting); those stored in clear before keep syncing, and are "
        "sealed at their next sync once it is set.",
    )

    @field_validator("secrets_key")
    @classmethod
    def _a_usable_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            try:
                parse_key(value.get_secret_value())
            except ValueError as exc:
                raise ValueError(f"rag.sources.secrets_key {exc}") from None
        return value


class RagSettings(BaseModel):
    """The context engine: collections, document ingestion and keyword search."""

    model_config = {"extra": "forbid"}

    embedding_model: str = Field(
        default="local/all-MiniLM-L6-v2",
        description="Embeddings model (a configured `kind: embeddings` model) of new "
        "collections; vectors must have 384 dimensions.",
    )
    chunk_max_tokens: int = Field(
        default=200,
        ge=16,
        description="Default chunk size in tokens (cl100k) of new collections. MiniLM reads "
        "at most 256 word pieces, about 220 such tokens.",
    )
    chunk_overlap_tokens: int = Field(
        default=32, ge=0, description="Default overlap between consecutive chunks, in tokens."
    )
    embed_batch_size: int = Field(
        default=64, ge=1, le=2048, description="Chunks sent in one embeddings call."
    )
    max_upload_bytes: int = Field(
        default=50 * 1024 * 1024, gt=0, description="Largest document accepted for ingestion."
    )
    max_pages: int = Field(
        default=2000,
        ge=1,
        description="Most pages of one PDF (slides, chapters, messages of a mailbox, TIFF frames).",
    )
    max_decompressed_bytes: int = Field(
        default=200 * 1024 * 1024,
        gt=0,
        description="Largest total uncompressed size of a ZIP-based document (DOCX, PPTX, XLSX, "
        "ODT, EPUB: zip bombs).",
    )
    max_ocr_pages: int = Field(
        default=200,
        ge=0,
        description="Most pages of one document read by OCR (scanned PDF pages, image frames); "
        "a document with more fails its job.",
    )
    max_chars: int = Field(
        default=20_000_000, gt=0, description="Most characters of extracted text per document."
    )
    parse_timeout_s: float = Field(
        default=300.0,
        gt=0,
        description="Seconds the parsing stage of one document may take; its process is killed "
        "after this (plus 2 s).",
    )
    parse_memory_mb: int = Field(
        default=2048,
        ge=256,
        description="Address space of the process that parses one document (RLIMIT_AS); a file "
        "needing more fails its job.",
    )
    embed_timeout_s: float = Field(
        default=900.0, gt=0, description="Seconds the embedding stage of one document may take."
    )
    max_attempts: int = Field(
        default=3, ge=1, description="Runs of an ingestion job before it fails for good."
    )
    sources: SourcesSettings = Field(default_factory=SourcesSettings)
    bm25_k1: float = Field(default=1.5, gt=0, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(
        default=0.75, ge=0, le=1, description="BM25 length normalisation (0: none)."
    )


class RetrievalSettings(BaseModel):
    """Search, answers with citations and conversations over collections (`rag/…` models)."""

    model_config = {"extra": "forbid"}

    spotlighting: Literal["datamark", "delimit"] = Field(
        default="datamark",
        description="How retrieved text is marked as untrusted in RAG prompts: `delimit` "
        "fences it in <source> blocks; `datamark` also joins its words with ˆ.",
    )
    exclude_risk_at: float | None = Field(
        default=0.78,
        ge=0,
        le=1,
        description="Chunks whose prompt-injection risk score (set at ingestion by the guard) "
        "is at least this are left out of answers (still shown, with their score, in search "
        "results); null keeps them. 0.78 is chosen on clean development documents: at most 2 % "
        "of them lose a chunk (`propylon eval guard --documents-only` prints it).",
    )
    answer_model: str = Field(
        default="local/extractive",
        description="Chat model that writes answers (called through the gateway chain).",
    )
    fusion: Literal["rrf", "weighted", "zscore"] = Field(
        default="zscore",
        description="Hybrid fusion: reciprocal-rank fusion, or a weighted sum of scores "
        "normalised per query (min-max: `weighted`; z-scores: `zscore`).",
    )
    rrf_k: int = Field(default=60, ge=1, description="RRF constant k in 1 / (k + rank).")
    dense_weight: float = Field(
        default=0.45,
        ge=0,
        le=1,
        description="Share of the dense (cosine) side in hybrid fusion; BM25 gets the rest. "
        "The default was tuned on SciFact's train queries (docs/benchmarks.md).",
    )
    candidates: int = Field(
        default=100, ge=1, le=1000, description="Hits taken from each side before fusing."
    )
    top_k: int = Field(default=8, ge=1, le=100, description="Default hits of a search or answer.")
    default_context_window: int = Field(
        default=8192, ge=256, description="Window assumed for a model that declares none."
    )
    max_context_tokens: int = Field(
        default=6000, ge=64, description="Most tokens of retrieved text put in one prompt."
    )
    answer_max_tokens: int = Field(
        default=512, ge=16, description="Tokens reserved for (and asked of) the answer."
    )
    history_share: float = Field(
        default=0.35,
        gt=0,
        lt=1,
        description="Most of the prompt budget given to conversation history; older turns "
        "beyond it are compacted.",
    )
    keep_turns: int = Field(
        default=2, ge=1, description="Latest turns always kept verbatim (budget permitting)."
    )
    reranker: str | None = Field(
        default=None,
        description="A `kind: rerank` model that reorders the best `rerank_candidates` hits "
        "of every search and RAG answer (before the context budget), called through the "
        "gateway chain; null (the default): hits stay in fusion order. Off by default because "
        "the built-in `local/minilm-rerank` lowers the hybrid's nDCG@10 on held-out SciFact "
        "claims (0.728 -> 0.718, docs/benchmarks.md); meant for a cross-encoder deployment.",
    )
    rerank_candidates: int = Field(
        default=20,
        ge=1,
        le=1000,
        description="Hits (after fusion) handed to `reranker`; at least `top_k` are.",
    )


class Settings(BaseSettings):
    """Propylon's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="PROPYLON_",
        env_nested_delimiter="__",
        extra="forbid",
        populate_by_name=True,
    )

    host: str = Field(default="127.0.0.1", description="Address `propylon serve` binds.")
    port: int = Field(default=8000, ge=0, le=65535, description="Port `propylon serve` binds.")
    data_dir: Path = Field(
        default=Path(".propylon"),
        description="Directory for the embedded PostgreSQL and other local state.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("database_url", "PROPYLON_DATABASE_URL", "DATABASE_URL"),
        description="PostgreSQL (with pgvector) to use. Unset: an embedded PostgreSQL is "
        "started in `data_dir`. Also read from `DATABASE_URL`.",
    )
    redis_url: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("redis_url", "PROPYLON_REDIS_URL", "REDIS_URL"),
        description="Redis shared by replicas for limits and caches. Also read from `REDIS_URL`.",
    )
    db_pool_min: int = Field(default=1, ge=0, description="Minimum database connections.")
    db_pool_max: int = Field(default=10, ge=1, description="Maximum database connections.")
    db_acquire_timeout_s: float = Field(
        default=1.5,
        gt=0,
        description="Longest wait for a pooled database connection. When the database is "
        "down, database-backed routes answer 503 with `Retry-After` after this long instead "
        "of hanging.",
    )
    migrate_on_start: bool = Field(
        default=True, description="Apply pending migrations when `serve` starts."
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Minimum level of log records."
    )
    admin_key: SecretStr | None = Field(
        default=None, description="Key that authorises `/admin/` endpoints."
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, gt=0, description="Largest JSON request body accepted."
    )
    max_messages: int = Field(
        default=2048,
        ge=1,
        description="Most `messages` a chat request may carry (OpenAI's limit); more is a 400 "
        "before any token is counted or any message embedded.",
    )
    upstream_connection_limit: int = Field(
        default=1000, ge=1, description="Open connections to upstreams, across hosts."
    )
    local_threads: int = Field(
        default=1, ge=1, description="CPU threads of the local embedding model."
    )
    local_int8: bool = Field(
        default=False,
        description="Run the local embedding model's 36 weight matrices with int8 kernels: "
        "about half the CPU per embedding, vectors within cosine 0.99 of the default ones "
        "(docs/benchmarks.md, 'int8 kernels'). The guard's thresholds and the semantic cache's "
        "were fitted on the default vectors; semantic-cache entries of either kind are kept "
        "apart; chunks already stored are not re-embedded.",
    )
    retry: RetrySettings = Field(
        default_factory=RetrySettings, description="Retry policy (see below)."
    )
    breaker: BreakerSettings = Field(
        default_factory=BreakerSettings, description="Circuit breaker policy (see below)."
    )
    models: list[ModelConfig] = Field(
        default_factory=list, description="Public models and their deployments (YAML)."
    )
    local_models: bool = Field(
        default=True,
        description="Also serve the built-in local models, `local/extractive` (chat), "
        "`local/all-MiniLM-L6-v2` (embeddings) and `local/minilm-rerank` (rerank: MiniLM "
        "similarity blended with BM25, not a cross-encoder), unless `models` names them "
        "itself: `propylon "
        "serve` with no configuration answers chat and ingests documents. Off: only `models`.",
    )
    jobs: JobsSettings = Field(
        default_factory=JobsSettings, description="Background jobs and workers (see below)."
    )
    cache: CacheSettings = Field(
        default_factory=CacheSettings, description="Response cache (see below)."
    )
    observe: ObserveSettings = Field(
        default_factory=ObserveSettings,
        description="Request log, metrics and traces (see below).",
    )
    access: AccessSettings = Field(
        default_factory=AccessSettings,
        description="API keys, rate limits and budgets (see below).",
    )
    guard: GuardSettings = Field(
        default_factory=GuardSettings,
        description="Prompt-injection detection, canary and output checks (see below).",
    )
    rag: RagSettings = Field(
        default_factory=RagSettings,
        description="Context engine: ingestion limits, chunking and embedding defaults, BM25.",
    )
    retrieval: RetrievalSettings = Field(
        default_factory=RetrievalSettings,
        description="Context engine: hybrid search, answers with citations, conversations.",
    )
    agents: AgentSettings = Field(
        default_factory=AgentSettings,
        description="Agent runs: the hosts their `http_get` tool may reach (see below).",
    )

    @field_validator("data_dir")
    @classmethod
    def _expand(cls, value: Path) -> Path:
        return value.expanduser()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))

    @model_validator(mode="after")
    def _add_local_models(self) -> Settings:
        if self.local_models:
            configured = {name for m in self.models for name in (m.name, *m.aliases)}
            self.models += [m for m in builtin_models() if m.name not in configured]
        return self

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None


def builtin_models() -> list[ModelConfig]:
    """The local models shipped in the package (``propylon/local/models.yaml``)."""
    text = resources.files("propylon.local").joinpath("models.yaml").read_text("utf-8")
    return [ModelConfig.model_validate(m) for m in yaml.safe_load(text)["models"]]


def load_settings(config: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings from overrides, the environment and the YAML file, once."""
    path = config or (Path(p) if (p := os.environ.get("PROPYLON_CONFIG")) else None)
    if path is not None and not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    clean = {k: v for k, v in overrides.items() if v is not None}

    class _FromFile(Settings):
        model_config = SettingsConfigDict(yaml_file=path)

    return _FromFile(**clean)
