-- Per-key spend in two series: the key's own traffic (`user`) and the calls Propylon made for
-- it (`internal`: RAG's summaries and query embeddings...). Budgets count the internal series
-- only when `access.internal_counts_against_budget` says so. Existing rows are user traffic.
ALTER TABLE key_usage ADD COLUMN origin text NOT NULL DEFAULT 'user'
    CHECK (origin IN ('user', 'internal'));
ALTER TABLE key_usage DROP CONSTRAINT key_usage_pkey;
ALTER TABLE key_usage ADD PRIMARY KEY (key_id, day, origin);
