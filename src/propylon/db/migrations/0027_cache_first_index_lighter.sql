-- The first stage's HNSW index (migration 0023) rebuilt lighter: m 12, ef_construction 40
-- instead of pgvector's 16 / 64. Every cache entry is inserted into it, and at pgvector's
-- defaults an insert cost PostgreSQL ~1.2 ms a row, so a database sharing a small machine
-- fell behind at a few hundred new entries a second; this index is only the fallback search
-- (the replica's in-memory index answers first). `python -m bench.cache_index` measures both
-- on 8,000 real questions: an insert 0.58-0.71 x the cost, the candidates above the first
-- stage's threshold found within 0.4 points (99.4-99.7 against 99.7-99.8 % in three runs),
-- searches as fast once warm (docs/benchmarks.md, "Semantic cache: the first stage's
-- database index").
DROP INDEX IF EXISTS cache_entries_first_hnsw_256;
CREATE INDEX cache_entries_first_hnsw_256
    ON cache_entries USING hnsw ((first_vector::vector(256)) vector_cosine_ops)
    WITH (m = 12, ef_construction = 40)
    WHERE first_model IS NOT NULL AND vector_dims(first_vector) = 256;
