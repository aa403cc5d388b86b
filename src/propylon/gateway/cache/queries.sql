-- Named queries of the semantic cache (loaded once by queries.py).
-- {vector} is the embedding's SQL type: vector(384) / vector(1536), which have an HNSW
-- index (see migration 0006), or plain vector for other sizes.

-- name: search
-- The response as text: parsed only for the candidate that is served, not for every one.
SELECT id, question, response::text AS response, min_probability,
       1 - (embedding::{vector} <=> %(embedding)s::{vector}) AS similarity
FROM cache_entries
WHERE tenant_id = %(tenant_id)s AND model = %(model)s AND scope = %(scope)s
  AND embedder = %(embedder)s AND dims = {dims} AND expires_at > now()
ORDER BY embedding::{vector} <=> %(embedding)s::{vector}
LIMIT %(limit)s;

-- name: search_first
-- The first stage (migration 0023): nearest static vectors; the embedder's vector in binary
-- (``db/vectors.py``), NULL until some search needed it.
SELECT id, question, response::text AS response, vector_send(embedding) AS embedding,
       min_probability, 1 - (first_vector::{vector} <=> %(first_vector)s::{vector}) AS first_similarity
FROM cache_entries
WHERE tenant_id = %(tenant_id)s AND model = %(model)s AND scope = %(scope)s
  AND embedder = %(embedder)s AND first_model = %(first_model)s
  AND vector_dims(first_vector) = {dims} AND expires_at > now()
ORDER BY first_vector::{vector} <=> %(first_vector)s::{vector}
LIMIT %(limit)s;

-- name: index_rows
-- A replica's first-stage index (first_index.py): the rows added since it last read (ids
-- above `after`) and those it is still waiting for (`gaps`); only the id of a row of another
-- embedder or static table, or expired. Vectors in binary (``db/vectors.py``).
SELECT id, tenant_id, model, scope, question,
       CASE WHEN embedder = %(embedder)s AND first_model = %(first_model)s
                 AND first_vector IS NOT NULL AND expires_at > now()
            THEN vector_send(first_vector) END AS first_vector,
       extract(epoch FROM expires_at)::float8 AS expires_at
FROM cache_entries
WHERE id > %(after)s OR id = ANY(%(gaps)s::bigint[])
ORDER BY id
LIMIT %(limit)s;

-- name: read_candidates
-- Candidates the first-stage index found near, by id: what the second check and a hit need.
SELECT id, question, response::text AS response, vector_send(embedding) AS embedding,
       min_probability
FROM cache_entries
WHERE id = ANY(%(ids)s::bigint[]) AND expires_at > now();

-- name: set_embedding
-- An entry's embedder vector, computed when a search first needed it.
UPDATE cache_entries SET embedding = %(embedding)s::vector, dims = %(dims)s
WHERE id = %(id)s AND embedding IS NULL;

-- name: insert
INSERT INTO cache_entries
    (tenant_id, model, scope, embedder, dims, question, embedding, response, expires_at,
     first_model, first_vector)
VALUES (%(tenant_id)s, %(model)s, %(scope)s, %(embedder)s, %(dims)s, %(question)s,
        %(embedding)s::vector, %(response)s::jsonb, now() + make_interval(secs => %(ttl_s)s),
        %(first_model)s, %(first_vector)s::vector)
RETURNING id;

-- name: record_lookups
-- A batch of lookup records in one statement, one array per column (``LOOKUP_COLUMNS``).
INSERT INTO cache_lookups
    (tenant_id, model, embedder, threshold, best_similarity, outcome, entry_id, reason)
SELECT * FROM unnest(%(tenant_id)s::text[], %(model)s::text[], %(embedder)s::text[],
                     %(threshold)s::real[], %(best_similarity)s::real[], %(outcome)s::text[],
                     %(entry_id)s::bigint[], %(reason)s::text[]);

-- name: tighten
-- A sampled verification found this entry's answer wrong for a wording the judge rated p:
-- from now on a wording must be rated at least `raised` (above p) to be served it.
UPDATE cache_entries
SET min_probability = greatest(coalesce(min_probability, 0), %(raised)s),
    verified_wrong = verified_wrong + 1
WHERE tenant_id = %(tenant_id)s AND model = %(model)s AND scope = %(scope)s
  AND question = %(question)s AND expires_at > now();

-- name: loosen
-- A sampled verification agreed: a tightened threshold moves `share` of the way back to the
-- global one (`floor`), and is forgotten once within 0.005 of it.
UPDATE cache_entries
SET min_probability = CASE
        WHEN min_probability IS NULL
          OR min_probability - (min_probability - %(floor)s) * %(share)s <= %(floor)s + 0.005
        THEN NULL
        ELSE min_probability - (min_probability - %(floor)s) * %(share)s END,
    verified_agree = verified_agree + 1
WHERE tenant_id = %(tenant_id)s AND model = %(model)s AND scope = %(scope)s
  AND question = %(question)s AND expires_at > now();

-- name: purge
DELETE FROM cache_entries
WHERE (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s)
  AND (%(model)s::text IS NULL OR model = %(model)s);

-- name: sweep_expired
DELETE FROM cache_entries
WHERE id IN (SELECT id FROM cache_entries WHERE expires_at <= now() LIMIT 1000);

-- name: analyze
-- The planner's statistics (semantic.py, ANALYZE_FROM); SKIP_LOCKED: when another replica is
-- analysing the table, that is enough.
ANALYZE (SKIP_LOCKED) cache_entries;

-- name: sweep_lookups
DELETE FROM cache_lookups
WHERE id IN (SELECT id FROM cache_lookups WHERE at < now() - interval '30 days' LIMIT 1000);

-- name: first_index_lock
-- The first stage's database index (database_index.py): built by one replica at a time. Not
-- waited for in a statement: a replica blocked here would hold a snapshot that the other's
-- CREATE INDEX CONCURRENTLY waits for (a deadlock); it asks again later instead.
SELECT pg_try_advisory_lock(hashtext('propylon.cache_entries_first_hnsw_256')) AS locked;

-- name: first_index_unlock
SELECT pg_advisory_unlock(hashtext('propylon.cache_entries_first_hnsw_256'));

-- name: first_index_valid
-- No row: no index; valid false: a concurrent build failed or was cut short.
SELECT i.indisvalid AS valid
FROM pg_index i
WHERE i.indexrelid = to_regclass('cache_entries_first_hnsw_256');

-- name: first_index_drop
DROP INDEX CONCURRENTLY IF EXISTS cache_entries_first_hnsw_256;

-- name: first_index_build
-- As migration 0028 built it (m 8, ef_construction 32: an insert costs ~0.3 ms of PostgreSQL;
-- searches buy recall back with hnsw.ef_search 120, db/database.py).
CREATE INDEX CONCURRENTLY IF NOT EXISTS cache_entries_first_hnsw_256
    ON cache_entries USING hnsw ((first_vector::vector(256)) vector_cosine_ops)
    WITH (m = 8, ef_construction = 32)
    WHERE first_model IS NOT NULL AND vector_dims(first_vector) = 256;
