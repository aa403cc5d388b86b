-- Search, answers and conversations over collections (issue 7). Loaded by retrieval_queries.py.

-- name: collections_of_tenant
SELECT id, name, embedding_model FROM collections
WHERE tenant_id = %(tenant_id)s AND (id::text = ANY(%(refs)s::text[]) OR name = ANY(%(refs)s::text[]))

-- name: dense_search
-- Nearest chunks by cosine distance (HNSW; iterative scan so filters still fill the limit).
SELECT c.id AS chunk_id, 1 - (c.embedding <=> %(vector)s::vector) AS score
FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE c.collection_id = ANY(%(collection_ids)s::uuid[]) AND c.embedding IS NOT NULL
  AND d.metadata @> %(filter)s::jsonb
ORDER BY c.embedding <=> %(vector)s::vector
LIMIT %(limit)s

-- name: hnsw_settings
SELECT set_config('hnsw.ef_search', %(ef_search)s, true),
       set_config('hnsw.iterative_scan', 'relaxed_order', true)

-- name: chunk_rows
SELECT c.id AS chunk_id, c.collection_id, c.document_id, c.ordinal, c.text, c.char_start,
       c.char_end, c.page, c.page_end, c.page_breaks, c.heading_path, c.risk_score, d.external_id,
       d.filename, d.metadata, c.location, c.ocr_confidence
FROM chunks c JOIN documents d ON d.id = c.document_id
WHERE c.id = ANY(%(ids)s::bigint[])

-- name: document_spans
-- documents.text[start:end] for each (document, start, end); substr counts characters.
SELECT s.i, substr(d.text, s.char_start + 1, s.char_end - s.char_start) AS text
FROM unnest(%(document_ids)s::uuid[], %(starts)s::int[], %(ends)s::int[])
     WITH ORDINALITY AS s(document_id, char_start, char_end, i)
JOIN documents d ON d.id = s.document_id

-- name: conversation_get
SELECT * FROM conversations WHERE id = %(id)s

-- name: conversation_insert
INSERT INTO conversations (id, tenant_id, collection_id) VALUES (%(id)s, %(tenant_id)s, %(collection_id)s)
ON CONFLICT (id) DO NOTHING
RETURNING *

-- name: conversation_turns
SELECT seq, role, content, citations FROM conversation_turns
WHERE conversation_id = %(id)s ORDER BY seq

-- name: conversation_add_turn
INSERT INTO conversation_turns (conversation_id, seq, role, content, citations)
SELECT %(id)s, coalesce(max(seq), 0) + 1, %(role)s, %(content)s, %(citations)s
FROM conversation_turns WHERE conversation_id = %(id)s

-- name: conversation_lock
SELECT id FROM conversations WHERE id = %(id)s FOR UPDATE

-- name: conversation_set_summary
UPDATE conversations
SET summary = %(summary)s, summary_through = %(through)s, summary_kind = %(kind)s,
    updated_at = now()
WHERE id = %(id)s

-- name: conversation_touch
UPDATE conversations SET updated_at = now() WHERE id = %(id)s

-- name: conversation_delete
DELETE FROM conversations WHERE id = %(id)s AND tenant_id = %(tenant_id)s RETURNING id

-- name: eval_document_ready
UPDATE documents SET text = %(text)s, status = 'ready', chunk_count = 1, ingested_at = now()
WHERE id = %(document_id)s
