-- The named SQL of the job queue. Every statement that changes a job bumps `seq`, which
-- orders the job's events. Statements run by a worker on its own job are fenced by
-- (worker_id, attempts, state = 'running'): a worker that lost its lease changes nothing.

-- name: enqueue
INSERT INTO jobs (tenant_id, kind, collection_id, payload, dedupe_key, max_attempts, stages)
VALUES (%(tenant_id)s, %(kind)s, %(collection_id)s, %(payload)s, %(dedupe_key)s,
        %(max_attempts)s, jsonb_build_object('queued', now()))
ON CONFLICT (tenant_id, kind, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running')
DO NOTHING
RETURNING *

-- name: live_duplicate
SELECT * FROM jobs
WHERE tenant_id = %(tenant_id)s AND kind = %(kind)s AND dedupe_key = %(dedupe_key)s
  AND state IN ('queued', 'running')

-- name: get
SELECT * FROM jobs WHERE id = %(id)s AND tenant_id = %(tenant_id)s

-- name: list_for_collection
SELECT * FROM jobs
WHERE tenant_id = %(tenant_id)s AND collection_id = %(collection_id)s
ORDER BY created_at DESC
LIMIT %(limit)s

-- name: request_cancel
-- A queued job is cancelled at once; a running one is flagged for its worker to stop.
UPDATE jobs SET
    cancel_requested = true,
    state = CASE WHEN state = 'queued' THEN 'cancelled' ELSE state END,
    finished_at = CASE WHEN state = 'queued' THEN now() ELSE finished_at END,
    stages = CASE WHEN state = 'queued' THEN stages || jsonb_build_object('cancelled', now())
                  ELSE stages END,
    seq = seq + 1,
    updated_at = now()
WHERE id = %(id)s AND tenant_id = %(tenant_id)s
  AND state IN ('queued', 'running') AND NOT cancel_requested
RETURNING *

-- name: claim
-- Fair: among tenants with a due job of these kinds (found by a loose index scan, one probe
-- per tenant), the one with the fewest running jobs (and under `tenant_cap`, when set) gives
-- its oldest due job; ties go to the oldest job. One tenant's backlog therefore delays
-- another tenant's job by at most one job's duration.
WITH RECURSIVE tenants AS (
    (SELECT tenant_id FROM jobs WHERE state = 'queued' ORDER BY tenant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT j.tenant_id FROM jobs j
            WHERE j.state = 'queued' AND j.tenant_id > t.tenant_id
            ORDER BY j.tenant_id LIMIT 1)
    FROM tenants t WHERE t.tenant_id IS NOT NULL
),
heads AS (
    SELECT running.n, head.id, head.run_after, head.created_at
    FROM tenants t
    CROSS JOIN LATERAL (
        SELECT count(*) AS n FROM jobs r WHERE r.tenant_id = t.tenant_id AND r.state = 'running'
    ) running
    CROSS JOIN LATERAL (
        SELECT q.id, q.run_after, q.created_at FROM jobs q
        WHERE q.tenant_id = t.tenant_id AND q.state = 'queued' AND q.run_after <= now()
          AND q.kind = ANY(%(kinds)s)
        ORDER BY q.run_after, q.created_at
        LIMIT 1
        FOR UPDATE SKIP LOCKED
    ) head
    WHERE t.tenant_id IS NOT NULL
      AND (%(tenant_cap)s::int IS NULL OR running.n < %(tenant_cap)s::int)
)
UPDATE jobs SET
    state = 'running',
    attempts = attempts + 1,
    worker_id = %(worker_id)s,
    lease_expires_at = now() + make_interval(secs => %(lease_s)s),
    stage = NULL, fraction = NULL, message = NULL, eta_s = NULL, counters = '{}',
    started_at = coalesce(started_at, now()),
    stages = stages || jsonb_build_object('running', now()),
    seq = seq + 1,
    updated_at = now()
WHERE id = (SELECT id FROM heads ORDER BY n, run_after, created_at LIMIT 1)
RETURNING *

-- name: claim_lock
-- With a per-tenant cap, claims take turns, so two cannot both see room for the same slot.
SELECT pg_advisory_xact_lock(%(lock)s)

-- name: next_due
SELECT extract(epoch FROM (min(run_after) - now()))::float8 AS wait_s
FROM jobs WHERE state = 'queued' AND kind = ANY(%(kinds)s)

-- name: heartbeat
UPDATE jobs SET lease_expires_at = now() + make_interval(secs => %(lease_s)s)
WHERE id = ANY(%(ids)s) AND worker_id = %(worker_id)s AND state = 'running'
RETURNING id, attempts, cancel_requested

-- name: progress
UPDATE jobs SET
    stages = CASE WHEN stage IS DISTINCT FROM %(stage)s::text
                  THEN stages || jsonb_build_object(%(stage)s::text, now()) ELSE stages END,
    stage = %(stage)s,
    fraction = %(fraction)s,
    message = %(message)s,
    counters = %(counters)s,
    eta_s = %(eta_s)s,
    seq = seq + 1,
    updated_at = now()
WHERE id = %(id)s AND worker_id = %(worker_id)s AND attempts = %(attempt)s
  AND state = 'running'
RETURNING *

-- name: succeed
UPDATE jobs SET
    state = 'succeeded',
    result = %(result)s,
    reason = NULL,
    fraction = 1.0,
    eta_s = 0,
    lease_expires_at = NULL,
    finished_at = now(),
    stages = stages || jsonb_build_object('succeeded', now()),
    seq = seq + 1,
    updated_at = now()
WHERE id = %(id)s AND worker_id = %(worker_id)s AND attempts = %(attempt)s
  AND state = 'running'
RETURNING *

-- name: fail
UPDATE jobs SET
    state = 'failed',
    reason = %(reason)s,
    eta_s = NULL,
    lease_expires_at = NULL,
    finished_at = now(),
    stages = stages || jsonb_build_object('failed', now()),
    seq = seq + 1,
    updated_at = now()
WHERE id = %(id)s AND worker_id = %(worker_id)s AND attempts = %(attempt)s
  AND state = 'running'
RETURNING *

-- name: retry
UPDATE jobs SET
    state = 'queued',
    reason = %(reason)s,
    eta_s = NULL,
    lease_expires_at = NULL,
    run_after = now() + make_interval(secs => %(delay_s)s),
    stages = stages || jsonb_build_object('queued', now()),
    seq = seq + 1,
    updated_at = now()
WHERE id = %(id)s AND worker_id = %(worker_id)s AND attempts = %(attempt)s
  AND state = 'running'
RETURNING *

-- name: mark_cancelled
UPDATE jobs SET
    state = 'cancelled',
    eta_s = NULL,
    lease_expires_at = NULL,
    finished_at = now(),
    stages = stages || jsonb_build_object('cancelled', now()),
    seq = seq + 1,
    updated_at = now()
WHERE id = %(id)s AND worker_id = %(worker_id)s AND attempts = %(attempt)s
  AND state = 'running'
RETURNING *

-- name: release
-- A worker shutting down hands a job back unfinished; the attempt does not count.
UPDATE jobs SET
    state = 'queued',
    attempts = attempts - 1,
    eta_s = NULL,
    lease_expires_at = NULL,
    run_after = now(),
    stages = stages || jsonb_build_object('queued', now()),
    seq = seq + 1,
    updated_at = now()
WHERE id = %(id)s AND worker_id = %(worker_id)s AND attempts = %(attempt)s
  AND state = 'running'
RETURNING *

-- name: reap
-- Jobs whose worker stopped renewing the lease (killed, frozen, partitioned): requeue them,
-- or end them when cancelled or out of attempts. A job that kills its worker every time
-- (a poison document) therefore fails after max_attempts instead of looping forever.
WITH expired AS (
    SELECT id, CASE WHEN cancel_requested THEN 'cancelled'
                    WHEN attempts >= max_attempts THEN 'failed'
                    ELSE 'queued' END AS next_state
    FROM jobs
    WHERE state = 'running' AND lease_expires_at < now()
    FOR UPDATE SKIP LOCKED
)
UPDATE jobs SET
    state = expired.next_state,
    reason = CASE WHEN expired.next_state = 'cancelled' THEN jobs.reason
                  ELSE 'worker lost (lease expired) during attempt ' || jobs.attempts END,
    finished_at = CASE WHEN expired.next_state = 'queued' THEN NULL ELSE now() END,
    run_after = now(),
    eta_s = NULL,
    lease_expires_at = NULL,
    stages = jobs.stages || jsonb_build_object(expired.next_state, now()),
    seq = jobs.seq + 1,
    updated_at = now()
FROM expired
WHERE jobs.id = expired.id
RETURNING jobs.*

-- name: notify
SELECT pg_notify('propylon_jobs', %(payload)s)

-- name: queued_by_kind
SELECT kind, count(*) AS queued FROM jobs WHERE state = 'queued' GROUP BY kind;
