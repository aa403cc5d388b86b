-- The request log: one row per /v1 request, written in batches (COPY) off the request path
-- by observe/request_log.py. Rows older than `observe.retention_days` are deleted periodically.

CREATE TABLE IF NOT EXISTS request_log (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at        timestamptz NOT NULL,         -- when the request arrived
    request_id        text NOT NULL,
    tenant_id         text,                         -- NULL: refused before authentication
    key_id            text,
    key_prefix        text,
    endpoint          text NOT NULL,                -- chat | embeddings | the path of others
    stream            boolean NOT NULL DEFAULT false,
    requested_model   text,
    deployment        text,                         -- who served it
    attempts          jsonb NOT NULL DEFAULT '[]',  -- [{"deployment", "outcome", "ms"}], in order
    attempt_count     smallint NOT NULL DEFAULT 0,  -- upstream calls made (skips excluded)
    status            smallint NOT NULL,            -- HTTP status the client saw
    error_type        text,                         -- OpenAI error type; NULL on success
    error_code        text,
    content_policy    text NOT NULL DEFAULT 'off',  -- full | hashed | off
    prompt            text,
    response          text,
    prompt_tokens     integer,
    completion_tokens integer,
    cached_tokens     integer,
    cost_usd          double precision,
    latency_ms        real NOT NULL,
    ttft_ms           real,                         -- streams: time to the first chunk
    overhead_ms       real,                         -- latency less time waiting on upstreams
    upstream_ms       real,
    cache_status      text,                         -- hit-exact | hit-semantic | miss | bypass
    cache_similarity  real,
    guard             jsonb,
    metadata          jsonb                          -- the caller's labels (prompt version…)
);

-- Time-range scans (stats, retention) and per-tenant listings, newest first.
CREATE INDEX IF NOT EXISTS request_log_created ON request_log (created_at);
CREATE INDEX IF NOT EXISTS request_log_tenant_created ON request_log (tenant_id, created_at DESC);
CREATE INDEX IF NOT EXISTS request_log_request_id ON request_log (request_id);
-- `metadata @> '{"prompt_version": "v2"}'` filters.
CREATE INDEX IF NOT EXISTS request_log_metadata ON request_log USING gin (metadata jsonb_path_ops);
