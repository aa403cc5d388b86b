-- The context engine's SQL (collections, documents, chunks, BM25). Loaded by queries.py.

-- name: collection_insert
INSERT INTO collections (tenant_id, name, description, chunking, embedding_model, metadata)
VALUES (%(tenant_id)s, %(name)s, %(description)s, %(chunking)s, %(embedding_model)s, %(metadata)s)
ON CONFLICT (tenant_id, name) DO NOTHING
RETURNING *

-- name: collection_list
SELECT c.*, (SELECT count(*) FROM documents d WHERE d.collection_id = c.id) AS document_count,
       coalesce(s.chunk_count, 0) AS chunk_count
FROM collections c LEFT JOIN bm25_stats s ON s.collection_id = c.id
WHERE c.tenant_id = %(tenant_id)s
ORDER BY c.created_at, c.name

-- name: collection_get
SELECT c.*, (SELECT count(*) FROM documents d WHERE d.collection_id = c.id) AS document_count,
       coalesce(s.chunk_count, 0) AS chunk_count
FROM collections c LEFT JOIN bm25_stats s ON s.collection_id = c.id
WHERE c.tenant_id = %(tenant_id)s AND (c.id::text = %(ref)s OR c.name = %(ref)s)
ORDER BY (c.id::text = %(ref)s) DESC
LIMIT 1

-- name: collection_delete
DELETE FROM collections WHERE tenant_id = %(tenant_id)s AND id = %(id)s RETURNING id

-- name: collection_lock
SELECT pg_advisory_xact_lock(hashtextextended(%(collection_id)s::text, 0))

-- name: document_by_sha256
-- `job_ended`: its job failed or was cancelled (the document may still say `processing` if
-- that job's worker was lost); such a document is no duplicate: its bytes may come again.
SELECT found.*, EXISTS (
    SELECT 1 FROM jobs j
    WHERE j.id = found.job_id::uuid AND j.state IN ('failed', 'cancelled')
) AS job_ended
FROM (
    SELECT d.*, NULL::uuid AS pending_upload FROM documents d
    WHERE d.collection_id = %(collection_id)s AND d.sha256 = %(sha256)s
    UNION ALL
    SELECT d.*, u.id AS pending_upload
    FROM document_uploads u JOIN documents d ON d.id = u.document_id
    WHERE d.collection_id = %(collection_id)s AND u.sha256 = %(sha256)s
    LIMIT 1
) found

-- name: document_by_external_id
SELECT * FROM documents WHERE collection_id = %(collection_id)s AND external_id = %(external_id)s

-- name: document_insert
INSERT INTO documents (collection_id, external_id, filename, media_type, size_bytes, metadata)
VALUES (%(collection_id)s, %(external_id)s, %(filename)s, %(media_type)s, %(size_bytes)s,
        %(metadata)s)
RETURNING *

-- name: document_requeue
UPDATE documents SET status = 'queued', error = NULL, job_id = %(job_id)s, updated_at = now(),
       metadata = coalesce(%(metadata)s, metadata)
WHERE id = %(document_id)s
RETURNING *

-- name: upload_insert
INSERT INTO document_uploads (document_id, sha256, content, filename, media_type)
VALUES (%(document_id)s, %(sha256)s, %(content)s, %(filename)s, %(media_type)s)
RETURNING id

-- name: upload_load
SELECT u.id AS upload_id, u.content, u.sha256, u.filename, u.media_type AS declared_type,
       d.id AS document_id, d.collection_id, c.chunking, c.embedding_model,
       c.embedding_model_id, c.embedding_weights
FROM document_uploads u
JOIN documents d ON d.id = u.document_id
JOIN collections c ON c.id = d.collection_id
WHERE u.id = %(upload_id)s

-- name: document_set_status
-- Fenced by the job attempt: applies only while the document is this job's and the attempt
-- still owns the job (its row is share-locked until commit, so the reaper cannot take it
-- in between). A job row that no longer exists fences nothing.
WITH owner AS (
    SELECT worker_id = %(worker_id)s AND attempts = %(attempt)s AND state = 'running' AS ours
    FROM jobs WHERE id = %(id)s::uuid
    FOR SHARE
)
UPDATE documents SET status = %(status)s, error = %(error)s, updated_at = now()
WHERE id = %(document_id)s AND job_id = %(id)s::text
  AND coalesce((SELECT ours FROM owner), true)
RETURNING id

-- name: document_job_ended
-- The reaper ended or requeued the document's job (its worker was lost).
UPDATE documents SET status = %(status)s, error = %(error)s, updated_at = now()
WHERE job_id = %(job_id)s AND status IN ('queued', 'processing')

-- name: document_lock
SELECT id FROM documents WHERE id = %(document_id)s FOR UPDATE

-- name: upload_is_current
SELECT EXISTS (SELECT 1 FROM document_uploads WHERE id = %(upload_id)s)
   AND NOT EXISTS (
       SELECT 1 FROM document_uploads newer, document_uploads mine
       WHERE mine.id = %(upload_id)s AND newer.document_id = mine.document_id
         AND (newer.created_at, newer.id) > (mine.created_at, mine.id)
   ) AS current

-- name: uploads_delete_through
DELETE FROM document_uploads old USING document_uploads mine
WHERE mine.id = %(upload_id)s AND old.document_id = mine.document_id
  AND (old.created_at, old.id) <= (mine.created_at, mine.id)

-- name: upload_delete
DELETE FROM document_uploads WHERE id = %(upload_id)s

-- name: chunks_delete_document
DELETE FROM chunks WHERE document_id = %(document_id)s

-- name: chunk_ids_reserve
SELECT nextval(pg_get_serial_sequence('chunks', 'id')) AS id FROM generate_series(1, %(n)s)

-- name: copy_chunks
COPY chunks (id, collection_id, document_id, ordinal, text, char_start, char_end, page, page_end,
             heading_path, token_count, term_count, embedding, embedding_model, embedding_weights,
             risk_score, page_breaks, location, ocr_confidence)
FROM STDIN

-- name: document_mark_ready
UPDATE documents
SET status = 'ready', error = NULL, sha256 = %(sha256)s, text = %(text)s,
    media_type = %(media_type)s, filename = coalesce(%(filename)s, filename),
    size_bytes = %(size_bytes)s, page_count = %(page_count)s, chunk_count = %(chunk_count)s,
    updated_at = now(), ingested_at = now()
WHERE id = %(document_id)s

-- name: collection_set_embedding_identity
UPDATE collections SET embedding_model_id = %(model_id)s, embedding_weights = %(weights)s
WHERE id = %(collection_id)s
  AND (embedding_model_id, embedding_weights) IS DISTINCT FROM (%(model_id)s, %(weights)s)

-- name: document_list
SELECT id, collection_id, external_id, filename, media_type, sha256, size_bytes, metadata,
       status, error, job_id, page_count, chunk_count, created_at, updated_at, ingested_at
FROM documents
WHERE collection_id = %(collection_id)s
ORDER BY created_at, id
LIMIT %(limit)s OFFSET %(offset)s

-- name: document_get
SELECT id, collection_id, external_id, filename, media_type, sha256, size_bytes, metadata,
       status, error, job_id, page_count, chunk_count, created_at, updated_at, ingested_at
FROM documents
WHERE collection_id = %(collection_id)s AND id::text = %(document_id)s

-- name: document_text
-- A window of a document's text; substr counts characters, as citation offsets do.
SELECT substr(text, %(start)s + 1, %(length)s) AS text, char_length(text) AS total
FROM documents
WHERE collection_id = %(collection_id)s AND id = %(document_id)s

-- name: document_delete
DELETE FROM documents WHERE collection_id = %(collection_id)s AND id = %(document_id)s
RETURNING id

-- name: copy_chunk_terms
COPY chunk_terms (collection_id, term, chunk_id, tf, doc_length) FROM STDIN

-- name: bm25_stats_add
INSERT INTO bm25_stats (collection_id, chunk_count, term_total)
VALUES (%(collection_id)s, %(chunks)s, %(terms)s)
ON CONFLICT (collection_id) DO UPDATE
SET chunk_count = bm25_stats.chunk_count + excluded.chunk_count,
    term_total = bm25_stats.term_total + excluded.term_total

-- name: bm25_stats_remove_document
UPDATE bm25_stats s
SET chunk_count = s.chunk_count - gone.n, term_total = s.term_total - gone.total
FROM (SELECT count(*) AS n, coalesce(sum(term_count), 0) AS total
      FROM chunks WHERE document_id = %(document_id)s) gone
WHERE s.collection_id = %(collection_id)s

-- name: bm25_scored
-- Lucene BM25 (k1, b) of every chunk of the collection holding a query term. The first half
-- of a keyword search: `BM25Index.search_terms` follows it with `bm25_top` or
-- `bm25_top_filtered`, so the formula is written once.
WITH stats AS (
    SELECT chunk_count::float8 AS n,
           term_total::float8 / greatest(chunk_count, 1) AS avgdl
    FROM bm25_stats WHERE collection_id = %(collection_id)s
), query AS (
    SELECT term, count(*)::float8 AS qtf FROM unnest(%(terms)s::text[]) AS term GROUP BY term
), postings AS (
    SELECT p.term, p.chunk_id, p.tf, p.doc_length, q.qtf
    FROM query q
    JOIN chunk_terms p ON p.collection_id = %(collection_id)s AND p.term = q.term
), df AS (
    SELECT term, count(*)::float8 AS df FROM postings GROUP BY term
), scored AS (
    SELECT p.chunk_id,
           sum(p.qtf * ln(1.0 + (s.n - df.df + 0.5) / (df.df + 0.5))
               * p.tf / (p.tf + %(k1)s * (1.0 - %(b)s + %(b)s * p.doc_length / s.avgdl))) AS score
    FROM postings p JOIN df USING (term) CROSS JOIN stats s
    GROUP BY p.chunk_id
)

-- name: bm25_top
SELECT chunk_id, score FROM scored
ORDER BY score DESC, chunk_id
LIMIT %(limit)s

-- name: bm25_top_filtered
-- Only chunks whose document metadata contains the filter; IDF and average length stay those
-- of the whole collection.
SELECT sc.chunk_id, sc.score
FROM scored sc JOIN chunks c ON c.id = sc.chunk_id JOIN documents d ON d.id = c.document_id
WHERE d.metadata @> %(filter)s::jsonb
ORDER BY sc.score DESC, sc.chunk_id
LIMIT %(limit)s

-- name: bm25_analyze
-- Fresh planner statistics after a bulk load, so searches use the postings index at once.
ANALYZE chunk_terms, chunks, bm25_stats
