-- Per-entry thresholds of the semantic cache, learnt from sampled verifications (the design of
-- vCache, arXiv 2502.03771). `min_probability` is the judge's probability a new wording must
-- reach to be served this entry's answer; NULL = the global `cache.semantic_min_probability`.
-- A verification that found the answer wrong raises it above that wording's probability; one
-- that agreed moves it a step back towards the global one. Kept with the entry, so every
-- replica and every restart sees it.
ALTER TABLE cache_entries
    ADD COLUMN IF NOT EXISTS min_probability real,
    ADD COLUMN IF NOT EXISTS verified_agree integer NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS verified_wrong integer NOT NULL DEFAULT 0;
