-- The ledger's columns of the request log (issue 18):
-- cost_saved_usd: a cache hit costs 0 (cost_usd) and records what its answer would have cost;
-- origin: `user` (a client's request) or `internal` (a call Propylon made for itself:
-- ingestion embeddings, RAG's inner model calls), with parent_id the request or job it served;
-- usage_estimated: the upstream gave no usage, so the tokens were counted by the tokenizer.
ALTER TABLE request_log
    ADD COLUMN IF NOT EXISTS cost_saved_usd double precision,
    ADD COLUMN IF NOT EXISTS origin text NOT NULL DEFAULT 'user',
    ADD COLUMN IF NOT EXISTS parent_id text,
    ADD COLUMN IF NOT EXISTS usage_estimated boolean NOT NULL DEFAULT false;
