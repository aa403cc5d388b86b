-- Named queries of the access part; loaded once by access/queries.py.

-- name: create_tenant
INSERT INTO tenants (name, limits, budget) VALUES (%(name)s, %(limits)s, %(budget)s)
RETURNING id, name, limits, budget, created_at;

-- name: tenant_by_ref
-- Locked until the deletion commits: a key made for it by name meanwhile waits, then makes a
-- new tenant of that name; one made by its id waits at the key's foreign key, then fails.
SELECT id, name FROM tenants WHERE id::text = %(ref)s OR name = %(ref)s
ORDER BY id::text = %(ref)s DESC LIMIT 1 FOR UPDATE;

-- name: tenant_by_id
SELECT id, name, limits, budget, created_at FROM tenants WHERE id = %(id)s::uuid;

-- name: ensure_tenant
WITH made AS (
    INSERT INTO tenants (name) VALUES (%(name)s)
    ON CONFLICT (name) DO NOTHING
    RETURNING id, name, limits, budget, created_at
)
SELECT * FROM made
UNION ALL
SELECT id, name, limits, budget, created_at FROM tenants WHERE name = %(name)s;

-- name: list_tenants
SELECT t.id, t.name, t.limits, t.budget, t.created_at,
       count(k.id) FILTER (WHERE k.revoked_at IS NULL) AS active_keys
FROM tenants t LEFT JOIN api_keys k ON k.tenant_id = t.id
GROUP BY t.id ORDER BY t.name;

-- name: active_key_named
-- Under a lock per tenant, so two keys made at once cannot both take a name.
SELECT pg_advisory_xact_lock(hashtextextended('key-names:' || %(tenant_id)s::text, 0)),
       EXISTS (SELECT 1 FROM api_keys WHERE tenant_id = %(tenant_id)s AND name = %(name)s
               AND revoked_at IS NULL) AS taken;

-- name: create_key
INSERT INTO api_keys (tenant_id, name, prefix, key_hash, models, features, limits, budget)
VALUES (%(tenant_id)s, %(name)s, %(prefix)s, %(key_hash)s, %(models)s, %(features)s,
        %(limits)s, %(budget)s)
RETURNING id;

-- name: key_records
SELECT k.id, k.tenant_id, t.name AS tenant_name, k.name, k.prefix, k.key_hash, k.models,
       k.features, k.limits, k.budget, t.limits AS tenant_limits, t.budget AS tenant_budget,
       k.created_at, k.revoked_at
FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
WHERE (%(key_id)s::uuid IS NULL OR k.id = %(key_id)s::uuid)
  AND (%(tenant_id)s::uuid IS NULL OR k.tenant_id = %(tenant_id)s::uuid)
  AND (%(key_hash)s::bytea IS NULL OR k.key_hash = %(key_hash)s::bytea)
  AND (%(tenant_name)s::text IS NULL OR t.name = %(tenant_name)s::text)
ORDER BY t.name, k.created_at;

-- name: find_keys
-- By id, else display prefix, else name: a key named after another key's id or prefix (by
-- any tenant's admin) never shadows it.
-- By name, a key in use before the revoked ones of that name (a name is reused on rotation).
SELECT k.id,
       CASE WHEN k.id::text = %(ref)s THEN 0 WHEN k.prefix = %(ref)s THEN 1
            WHEN k.revoked_at IS NULL THEN 2 ELSE 3 END AS rank
FROM api_keys k
WHERE (k.id::text = %(ref)s OR k.prefix = %(ref)s OR k.name = %(ref)s)
  AND (%(tenant_id)s::uuid IS NULL OR k.tenant_id = %(tenant_id)s::uuid)
ORDER BY rank;

-- name: revoke_key
UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
WHERE id = %(key_id)s
RETURNING id, tenant_id;

-- name: notify
SELECT pg_notify('propylon_access', %(payload)s);

-- name: record_usage
INSERT INTO key_usage (key_id, tenant_id, day, origin, requests, prompt_tokens,
                       completion_tokens, cost_usd)
VALUES (%(key_id)s, %(tenant_id)s, %(day)s, %(origin)s, %(requests)s,
        %(prompt_tokens)s, %(completion_tokens)s, %(cost_usd)s)
ON CONFLICT (key_id, day, origin) DO UPDATE SET
    requests = key_usage.requests + excluded.requests,
    prompt_tokens = key_usage.prompt_tokens + excluded.prompt_tokens,
    completion_tokens = key_usage.completion_tokens + excluded.completion_tokens,
    cost_usd = key_usage.cost_usd + excluded.cost_usd;

-- name: spend
-- What the budgets count: user traffic, and internal calls when %(internal)s.
SELECT
    coalesce(sum(prompt_tokens + completion_tokens)
             FILTER (WHERE key_id = %(key_id)s AND day >= %(key_since)s), 0) AS key_tokens,
    coalesce(sum(cost_usd) FILTER (WHERE key_id = %(key_id)s AND day >= %(key_since)s), 0)
        AS key_cost,
    coalesce(sum(prompt_tokens + completion_tokens) FILTER (WHERE day >= %(tenant_since)s), 0)
        AS tenant_tokens,
    coalesce(sum(cost_usd) FILTER (WHERE day >= %(tenant_since)s), 0) AS tenant_cost
FROM key_usage
WHERE tenant_id = %(tenant_id)s AND day >= least(%(key_since)s, %(tenant_since)s)
  AND (origin = 'user' OR %(internal)s);

-- name: key_usage
-- One row per day: the key's own traffic, and the internal calls made for it as their own series.
SELECT day,
       coalesce(sum(requests) FILTER (WHERE origin = 'user'), 0)::bigint AS requests,
       coalesce(sum(prompt_tokens) FILTER (WHERE origin = 'user'), 0)::bigint AS prompt_tokens,
       coalesce(sum(completion_tokens) FILTER (WHERE origin = 'user'), 0)::bigint AS completion_tokens,
       coalesce(sum(cost_usd) FILTER (WHERE origin = 'user'), 0) AS cost_usd,
       coalesce(sum(requests) FILTER (WHERE origin = 'internal'), 0)::bigint AS internal_requests,
       coalesce(sum(prompt_tokens) FILTER (WHERE origin = 'internal'), 0)::bigint
           AS internal_prompt_tokens,
       coalesce(sum(completion_tokens) FILTER (WHERE origin = 'internal'), 0)::bigint
           AS internal_completion_tokens,
       coalesce(sum(cost_usd) FILTER (WHERE origin = 'internal'), 0) AS internal_cost_usd
FROM key_usage WHERE key_id = %(key_id)s
GROUP BY day ORDER BY day DESC LIMIT %(days)s;

-- name: issue_ticket
WITH expired AS (DELETE FROM ws_tickets WHERE expires_at < now() - interval '1 minute')
INSERT INTO ws_tickets (ticket_hash, key_id, expires_at)
VALUES (%(ticket_hash)s, %(key_id)s, now() + make_interval(secs => %(ttl_s)s));

-- name: redeem_ticket
DELETE FROM ws_tickets WHERE ticket_hash = %(ticket_hash)s AND expires_at > now()
RETURNING key_id;

-- name: ensure_key_secret
INSERT INTO key_secrets (generation, secret) VALUES (1, %(secret)s)
ON CONFLICT (generation) DO NOTHING;

-- name: current_key_secret
SELECT generation, secret FROM key_secrets ORDER BY generation DESC LIMIT 1;

-- name: rotate_key_secret
INSERT INTO key_secrets (generation, secret)
SELECT coalesce(max(generation), 0) + 1, %(secret)s FROM key_secrets
RETURNING generation;
