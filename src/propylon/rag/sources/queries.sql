-- Sources and their sync bookkeeping (migrations 0021, 0026). Loaded by sources/queries.py.

-- name: source_insert
INSERT INTO sources (tenant_id, collection_id, type, config, secret, key_id, interval_s,
                     next_sync_at)
VALUES (%(tenant_id)s, %(collection_id)s, %(type)s, %(config)s, %(secret)s, %(key_id)s,
        %(interval_s)s,
        CASE WHEN %(interval_s)s::integer IS NULL THEN NULL
             ELSE now() + %(interval_s)s::integer * interval '1 second' END)
RETURNING *

-- name: source_list
SELECT s.*, (SELECT count(*) FROM source_items i WHERE i.source_id = s.id) AS document_count
FROM sources s
WHERE s.tenant_id = %(tenant_id)s AND s.collection_id = %(collection_id)s
ORDER BY s.created_at, s.id

-- name: source_get
SELECT s.*, (SELECT count(*) FROM source_items i WHERE i.source_id = s.id) AS document_count
FROM sources s
WHERE s.tenant_id = %(tenant_id)s AND s.collection_id = %(collection_id)s
  AND s.id::text = %(source_id)s

-- name: source_load
SELECT * FROM sources WHERE id = %(source_id)s

-- name: source_delete
DELETE FROM sources WHERE id = %(source_id)s RETURNING id

-- name: source_set_secret
UPDATE sources SET secret = %(secret)s WHERE id = %(source_id)s

-- name: source_set_job
UPDATE sources SET last_job_id = %(job_id)s WHERE id = %(source_id)s

-- name: source_synced
UPDATE sources
SET last_job_id = %(job_id)s, last_sync_at = now(), last_result = %(result)s
WHERE id = %(source_id)s

-- name: sources_due
-- Scheduled sources whose time has come, moved to their next time in the same statement;
-- SKIP LOCKED: two workers never take the same one.
UPDATE sources s
SET next_sync_at = now() + s.interval_s * interval '1 second'
FROM (SELECT id FROM sources
      WHERE next_sync_at IS NOT NULL AND next_sync_at <= now()
      ORDER BY next_sync_at
      LIMIT %(limit)s
      FOR UPDATE SKIP LOCKED) due
WHERE s.id = due.id
RETURNING s.id, s.tenant_id, s.collection_id, s.key_id

-- name: item_list
SELECT key, document_id, version, sha256, links FROM source_items
WHERE source_id = %(source_id)s

-- name: item_upsert
INSERT INTO source_items (source_id, key, document_id, version, sha256, links)
VALUES (%(source_id)s, %(key)s, %(document_id)s, %(version)s, %(sha256)s, %(links)s)
ON CONFLICT (source_id, key) DO UPDATE
SET document_id = excluded.document_id, version = excluded.version, sha256 = excluded.sha256,
    links = excluded.links

-- name: item_delete
DELETE FROM source_items WHERE source_id = %(source_id)s AND key = %(key)s
RETURNING document_id

-- name: item_documents
-- The documents a source brought in and no other source item still points to.
SELECT DISTINCT i.document_id FROM source_items i
WHERE i.source_id = %(source_id)s
  AND NOT EXISTS (SELECT 1 FROM source_items o
                  WHERE o.document_id = i.document_id AND o.source_id <> i.source_id)

-- name: document_unshared
-- True when no source item points to the document any more (it may be deleted).
SELECT NOT EXISTS (SELECT 1 FROM source_items WHERE document_id = %(document_id)s) AS unshared

-- name: sync_done
SELECT key, outcome FROM source_sync_items WHERE job_id = %(job_id)s

-- name: sync_record
INSERT INTO source_sync_items (job_id, key, outcome)
VALUES (%(job_id)s, %(key)s, %(outcome)s)
ON CONFLICT (job_id, key) DO NOTHING

-- name: sync_counts
SELECT outcome, count(*) AS n FROM source_sync_items WHERE job_id = %(job_id)s GROUP BY outcome

-- name: sync_forget
DELETE FROM source_sync_items WHERE job_id = %(job_id)s

-- name: sync_forget_ended
-- What syncs that failed or were cancelled for good had recorded (a finished sync drops its
-- own rows when it completes).
DELETE FROM source_sync_items s
USING jobs j
WHERE j.id = s.job_id AND j.state IN ('failed', 'cancelled')
