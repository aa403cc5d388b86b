-- Security, round two: WebSocket tickets, the server secret of key checks, admin kinds.

-- A ticket opens one WebSocket within 30 s of being issued (POST /v1/ws-tickets), so no key
-- ever travels in a URL. Only its SHA-256 is stored; redeeming deletes it.
CREATE TABLE IF NOT EXISTS ws_tickets (
    ticket_hash bytea PRIMARY KEY,
    key_id      uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    expires_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS ws_tickets_expiry ON ws_tickets (expires_at);

-- The secret under which a key's check characters are an HMAC: forged keys are refused
-- without a lookup. Generation 1 is made at first start; `propylon keys rotate-secret` adds
-- the next. Keys made under any generation keep working (they are looked up by hash).
CREATE TABLE IF NOT EXISTS key_secrets (
    generation integer PRIMARY KEY,
    secret     bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- `admin` used to administer every tenant; it now administers its own tenant, and `operator`
-- administers all. Existing keys keep what they could do: admin keys become operators too,
-- and every existing key may still read logged prompts (`logs:read`, off for new keys).
UPDATE api_keys
SET features = ARRAY(
    SELECT DISTINCT f FROM unnest(
        features
        || ARRAY['logs:read']
        || CASE WHEN 'admin' = ANY (features) THEN ARRAY['operator'] ELSE ARRAY[]::text[] END
    ) AS f ORDER BY f
)
WHERE NOT ('logs:read' = ANY (features));

-- Documents whose job the reaper ended before it failed them too: they say so now, and their
-- bytes may be uploaded again.
UPDATE documents d
SET status = 'failed', error = coalesce(j.reason, 'The job was ' || j.state || '.'),
    updated_at = now()
FROM jobs j
WHERE j.id::text = d.job_id AND j.state IN ('failed', 'cancelled')
  AND d.status IN ('queued', 'processing');

-- The fair claim (jobs/queries.sql: claim): each tenant's due jobs, and its running ones.
CREATE INDEX IF NOT EXISTS jobs_tenant_queued ON jobs (tenant_id, run_after, created_at)
    WHERE state = 'queued';
CREATE INDEX IF NOT EXISTS jobs_tenant_running ON jobs (tenant_id) WHERE state = 'running';
