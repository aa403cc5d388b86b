-- The semantic cache: one row per cached answer, found by the embedding of the question's
-- last user message, only inside its hard scope (tenant, model, and a hash of everything else
-- in the request: system prompt, tools, sampling parameters, preceding turns, salt).
CREATE TABLE IF NOT EXISTS cache_entries (
    id          bigserial PRIMARY KEY,
    tenant_id   text NOT NULL,
    model       text NOT NULL,             -- resolved public model name
    scope       text NOT NULL,             -- sha256 of the request without its last question
    embedder    text NOT NULL,             -- vectors of different embedders never compare
    dims        integer NOT NULL,
    question    text NOT NULL,             -- the last user message (for the second check)
    embedding   vector NOT NULL,
    response    jsonb NOT NULL,            -- the chat.completion served on a hit
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);

-- Scope filter first: every search is `WHERE tenant_id, model, scope, embedder`.
CREATE INDEX IF NOT EXISTS cache_entries_scope
    ON cache_entries (tenant_id, model, scope, embedder, expires_at);
CREATE INDEX IF NOT EXISTS cache_entries_expiry ON cache_entries (expires_at);

-- HNSW (cosine) per embedding size in use: 384 = the local all-MiniLM-L6-v2, 1536 = OpenAI
-- text-embedding-3-small / ada-002. Other sizes are searched exactly inside their scope.
CREATE INDEX IF NOT EXISTS cache_entries_hnsw_384
    ON cache_entries USING hnsw ((embedding::vector(384)) vector_cosine_ops)
    WHERE dims = 384;
CREATE INDEX IF NOT EXISTS cache_entries_hnsw_1536
    ON cache_entries USING hnsw ((embedding::vector(1536)) vector_cosine_ops)
    WHERE dims = 1536;

-- Every semantic lookup, hit or miss, with the best similarity found, so thresholds can be
-- tuned from real traffic (`SELECT outcome, best_similarity FROM cache_lookups …`).
CREATE TABLE IF NOT EXISTS cache_lookups (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    tenant_id       text NOT NULL,
    model           text NOT NULL,
    embedder        text NOT NULL,
    threshold       real NOT NULL,
    best_similarity real,                  -- NULL: nothing in scope
    outcome         text NOT NULL,         -- hit | miss | rejected (failed the second check)
    entry_id        bigint,                -- the entry served or rejected
    reason          text                   -- why the second check refused the candidate
);
CREATE INDEX IF NOT EXISTS cache_lookups_at ON cache_lookups (at);
CREATE INDEX IF NOT EXISTS cache_lookups_model ON cache_lookups (model, at);
