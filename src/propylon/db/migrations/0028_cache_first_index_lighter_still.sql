-- The first stage's HNSW index (migrations 0023, 0027) rebuilt lighter again: m 8,
-- ef_construction 32 instead of 12 / 40. Every cache entry is inserted into it (about 0.5 ms of
-- PostgreSQL a row at 12 / 40, the largest part of what the semantic cache costs the database
-- a request), while it is searched only as the fallback (the replica's in-memory index answers
-- first). The recall a lighter graph loses is bought back at search time, where it is rare:
-- every pooled connection searches with hnsw.ef_search = 120 (db/database.py). Measured on
-- 8,000 real questions (`python -m bench.cache_index`, docs/benchmarks.md): an insert
-- 0.28-0.34 ms, 0.37-0.41 x pgvector's default build (12 / 40: 0.58-0.71 x), the candidates
-- above the first stage's threshold found 99.3-99.8 % (12 / 40 with ef_search 40: 99.4-99.7 %).
DROP INDEX IF EXISTS cache_entries_first_hnsw_256;
CREATE INDEX cache_entries_first_hnsw_256
    ON cache_entries USING hnsw ((first_vector::vector(256)) vector_cosine_ops)
    WITH (m = 8, ef_construction = 32)
    WHERE first_model IS NOT NULL AND vector_dims(first_vector) = 256;
