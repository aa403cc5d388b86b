-- name: insert_run
-- `steps`: by name for a chain, an array for an agent (its steps are appended as it goes).
INSERT INTO runs (tenant_id, kind, spec, principal, steps)
VALUES (%(tenant_id)s, %(kind)s, %(spec)s, %(principal)s, %(steps)s)
RETURNING id;

-- name: attach_job
UPDATE runs SET job_id = %(job_id)s WHERE id = %(run_id)s;

-- name: get_run
SELECT r.*, j.state AS job_state, j.reason AS job_reason
FROM runs r LEFT JOIN jobs j ON j.id = r.job_id
WHERE r.id = %(run_id)s AND r.tenant_id = %(tenant_id)s;

-- name: get_run_for_worker
SELECT * FROM runs WHERE id = %(run_id)s;

-- name: list_runs
-- Newest first; with `after` (a run of the tenant), those made before it.
SELECT r.*, j.state AS job_state, j.reason AS job_reason
FROM runs r LEFT JOIN jobs j ON j.id = r.job_id
WHERE r.tenant_id = %(tenant_id)s
  AND (%(after)s::uuid IS NULL OR (r.created_at, r.id) <
       (SELECT created_at, id FROM runs WHERE id = %(after)s::uuid))
ORDER BY r.created_at DESC, r.id DESC
LIMIT %(limit)s;

-- name: update_run
UPDATE runs
SET state = %(state)s, steps = %(steps)s, output = coalesce(%(output)s, output),
    result = %(result)s,
    error = %(error)s, updated_at = now(),
    finished_at = CASE WHEN %(state)s IN ('succeeded', 'failed', 'cancelled') THEN now() END
WHERE id = %(run_id)s;

-- name: next_seq
SELECT coalesce(max(seq), 0) AS seq FROM run_events WHERE run_id = %(run_id)s;

-- name: append_event
INSERT INTO run_events (run_id, seq, type, data) VALUES (%(run_id)s, %(seq)s, %(type)s, %(data)s);

-- name: events_after
SELECT seq, type, data FROM run_events
WHERE run_id = %(run_id)s AND seq > %(after)s
ORDER BY seq
LIMIT %(limit)s;

-- name: append_output
-- Append-only: each flush adds its piece (the first piece of an answer starts it over).
UPDATE runs
SET output = CASE WHEN %(first)s THEN %(piece)s ELSE output || %(piece)s END, updated_at = now()
WHERE id = %(run_id)s;

-- name: notify
SELECT pg_notify('propylon_jobs', %(payload)s);

-- name: document_slice
SELECT substr(d.text, %(start)s + 1, %(length)s) AS slice
FROM documents d JOIN collections c ON c.id = d.collection_id
WHERE d.id = %(document_id)s AND c.tenant_id = %(tenant_id)s;

-- name: queued_runs_of_key
SELECT r.id, r.job_id FROM runs r JOIN jobs j ON j.id = r.job_id
WHERE r.tenant_id = %(tenant_id)s AND r.principal->>'key_id' = %(key_id)s
  AND j.state = 'queued';

-- name: cancel_waiting_runs_of_key
UPDATE runs SET state = 'cancelled', error = %(error)s, updated_at = now(), finished_at = now()
WHERE tenant_id = %(tenant_id)s AND principal->>'key_id' = %(key_id)s
  AND state = 'waiting_for_approval'
RETURNING id;

-- name: mark_cancelled
UPDATE runs SET state = 'cancelled', error = %(error)s, updated_at = now(), finished_at = now()
WHERE id = ANY(%(ids)s) AND state = 'queued';

-- name: lock_run
SELECT * FROM runs WHERE id = %(run_id)s AND tenant_id = %(tenant_id)s FOR UPDATE;

-- name: resume_run
-- A decided approval: the run goes back to the queue with its steps and its next job.
UPDATE runs SET state = 'queued', steps = %(steps)s, job_id = %(job_id)s, updated_at = now()
WHERE id = %(run_id)s;

-- name: cancel_waiting_run
UPDATE runs SET state = 'cancelled', error = %(error)s, updated_at = now(), finished_at = now()
WHERE id = %(run_id)s AND state = 'waiting_for_approval';

-- name: insert_mcp_server
INSERT INTO mcp_servers (tenant_id, name, url, command)
VALUES (%(tenant_id)s, %(name)s, %(url)s, %(command)s)
ON CONFLICT (tenant_id, name) DO NOTHING
RETURNING *;

-- name: list_mcp_servers
SELECT * FROM mcp_servers WHERE tenant_id = %(tenant_id)s ORDER BY name;

-- name: get_mcp_server
SELECT * FROM mcp_servers WHERE tenant_id = %(tenant_id)s AND name = %(name)s;

-- name: delete_mcp_server
DELETE FROM mcp_servers WHERE tenant_id = %(tenant_id)s AND name = %(name)s RETURNING id;
