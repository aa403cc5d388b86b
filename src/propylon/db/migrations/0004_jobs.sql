-- Durable background jobs: a FOR UPDATE SKIP LOCKED queue with leases (see docs/architecture.md).

CREATE TABLE jobs (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id        text NOT NULL,
    kind             text NOT NULL,
    collection_id    text,                      -- groups jobs for the per-collection event feed
    payload          jsonb NOT NULL DEFAULT '{}',
    dedupe_key       text,
    state            text NOT NULL DEFAULT 'queued'
                     CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    stage            text,                      -- what a running job is doing ("parsing"…)
    reason           text,                      -- why it failed (or was retried last)
    attempts         integer NOT NULL DEFAULT 0,    -- runs started so far
    max_attempts     integer NOT NULL DEFAULT 3 CHECK (max_attempts >= 1),
    run_after        timestamptz NOT NULL DEFAULT now(), -- backoff: not claimed before this
    worker_id        text,                      -- owner of the current attempt
    lease_expires_at timestamptz,               -- the owner renews it; past it, the reaper requeues
    cancel_requested boolean NOT NULL DEFAULT false,
    fraction         double precision,          -- progress within the stage, 0..1
    message          text,
    counters         jsonb NOT NULL DEFAULT '{}',
    eta_s            double precision,
    stages           jsonb NOT NULL DEFAULT '{}',  -- {stage or state: first time reached}
    result           jsonb,
    seq              bigint NOT NULL DEFAULT 0,    -- bumped by every change; orders the events
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL DEFAULT now()
);

-- The claim query: the oldest due queued job.
CREATE INDEX jobs_due ON jobs (run_after, created_at) WHERE state = 'queued';
-- The reaper: running jobs by lease.
CREATE INDEX jobs_leases ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_collection ON jobs (tenant_id, collection_id, created_at)
    WHERE collection_id IS NOT NULL;
-- One live job per dedupe key.
CREATE UNIQUE INDEX jobs_dedupe ON jobs (tenant_id, kind, dedupe_key)
    WHERE dedupe_key IS NOT NULL AND state IN ('queued', 'running');
