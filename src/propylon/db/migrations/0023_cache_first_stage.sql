-- The semantic cache's first stage (gateway/cache/first_stage.py): every entry also carries
-- the static vector of its question (local/static.py), searched first. The embedder's own
-- vector is computed only once a later question's static vector comes near the entry, so it
-- (and its size) stay NULL until then; the HNSW indexes of migration 0006 skip NULL rows.
ALTER TABLE cache_entries ALTER COLUMN embedding DROP NOT NULL;
ALTER TABLE cache_entries ALTER COLUMN dims DROP NOT NULL;
ALTER TABLE cache_entries ADD COLUMN IF NOT EXISTS first_model text;  -- static table's id
ALTER TABLE cache_entries ADD COLUMN IF NOT EXISTS first_vector vector;

-- 256 = the shipped static table's size; a table of another size is searched exactly.
CREATE INDEX IF NOT EXISTS cache_entries_first_hnsw_256
    ON cache_entries USING hnsw ((first_vector::vector(256)) vector_cosine_ops)
    WHERE first_model IS NOT NULL AND vector_dims(first_vector) = 256;
