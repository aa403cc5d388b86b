-- The first stage's HNSW index (migrations 0023, 0027, 0028) is no longer kept from the start.
-- Each replica searches the static vectors in memory (gateway/cache/first_index.py); the
-- database searches them only for a replica without that index or past its size, yet every
-- entry paid an insert into this index: about 0.3 ms of PostgreSQL a stored answer. The first
-- replica whose search falls to the database builds it again, concurrently
-- (gateway/cache/database_index.py); until then such a search scans its scope's rows.
DROP INDEX IF EXISTS cache_entries_first_hnsw_256;
