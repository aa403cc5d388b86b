-- The named SQL of the observe part (request log), read once by queries.py.

-- name: delete_expired
-- One bounded slice per statement, so retention never holds long locks. With `tenant_id`:
-- that tenant's rows (its own retention); without: every other tenant's (`exempt` have their
-- own).
DELETE FROM request_log
WHERE id IN (
    SELECT id FROM request_log
    WHERE created_at < now() - make_interval(secs => %(older_than_s)s)
      AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s)
      AND (%(tenant_id)s::text IS NOT NULL OR tenant_id IS NULL
           OR NOT (tenant_id = ANY(%(exempt)s::text[])))
    LIMIT %(limit)s
);

-- name: delete_expired_feedback
DELETE FROM feedback
WHERE id IN (
    SELECT id FROM feedback
    WHERE created_at < now() - make_interval(secs => %(older_than_s)s)
      AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s)
      AND (%(tenant_id)s::text IS NOT NULL OR NOT (tenant_id = ANY(%(exempt)s::text[])))
    LIMIT %(limit)s
);

-- name: list_logs
-- `q`: free text over prompts and answers (the `request_log_text` index); `guard`: the
-- guard's action (pass, flag, sanitize, block); feedback: the mean score of the request's.
SELECT id, created_at, request_id, tenant_id, key_prefix, endpoint, stream, requested_model,
       deployment, attempts, attempt_count, status, error_type, error_code, content_policy,
       prompt, response, prompt_tokens, completion_tokens, cached_tokens, cost_usd, latency_ms,
       ttft_ms, overhead_ms, upstream_ms, cache_status, cache_similarity, guard, metadata,
       cost_saved_usd, origin, parent_id, usage_estimated, response_id, headers,
       (SELECT avg(f.score) FROM feedback f
        WHERE f.tenant_id = r.tenant_id AND f.request_id = r.request_id) AS feedback_score
FROM request_log r
WHERE created_at >= %(since)s AND created_at < %(until)s
  AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s)
  AND (%(model)s::text IS NULL OR requested_model = %(model)s)
  AND (%(status)s::int IS NULL OR status = %(status)s)
  AND (%(status_class)s::int IS NULL OR status / 100 = %(status_class)s)
  AND (%(failed)s::boolean IS NULL OR (error_type IS NOT NULL) = %(failed)s)
  AND (%(cache_status)s::text IS NULL OR cache_status = %(cache_status)s)
  AND (%(metadata)s::jsonb IS NULL OR metadata @> %(metadata)s::jsonb)
  AND (%(request_id)s::text IS NULL OR request_id = %(request_id)s)
  AND (%(origin)s::text IS NULL OR origin = %(origin)s)
  AND (%(guard)s::text IS NULL OR guard ->> 'action' = %(guard)s)
  AND (%(key_prefix)s::text IS NULL OR key_prefix = %(key_prefix)s)
  AND (%(q)s::text IS NULL
       OR to_tsvector('simple', coalesce(prompt, '') || ' ' || coalesce(response, ''))
          @@ plainto_tsquery('simple', %(q)s))
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: get_log
-- One record by its row id or its request id (the newest of that id), within a tenant.
SELECT id, created_at, request_id, tenant_id, key_prefix, endpoint, stream, requested_model,
       deployment, attempts, attempt_count, status, error_type, error_code, content_policy,
       prompt, response, prompt_tokens, completion_tokens, cached_tokens, cost_usd, latency_ms,
       ttft_ms, overhead_ms, upstream_ms, cache_status, cache_similarity, guard, metadata,
       cost_saved_usd, origin, parent_id, usage_estimated, response_id, headers
FROM request_log
WHERE (id = %(row_id)s OR request_id = %(request_id)s)
  AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s)
ORDER BY id DESC
LIMIT 1;

-- name: log_children
-- The calls Propylon made for a request (RAG's model calls, embeddings), in order.
SELECT id, created_at, request_id, endpoint, requested_model, deployment, status, error_type,
       latency_ms, upstream_ms, prompt_tokens, completion_tokens, cost_usd, cache_status,
       attempts
FROM request_log
WHERE parent_id = %(request_id)s AND tenant_id IS NOT DISTINCT FROM %(tenant_id)s
ORDER BY created_at, id
LIMIT 200;

-- name: find_request
-- The request a feedback names, by request id or response id, within the caller's tenant.
SELECT request_id FROM request_log
WHERE tenant_id = %(tenant_id)s
  AND ((%(request_id)s::text IS NOT NULL AND request_id = %(request_id)s)
       OR (%(response_id)s::text IS NOT NULL AND response_id = %(response_id)s))
ORDER BY id DESC
LIMIT 1;

-- name: insert_feedback
INSERT INTO feedback (tenant_id, request_id, key_prefix, score, kind, comment, metadata)
VALUES (%(tenant_id)s, %(request_id)s, %(key_prefix)s, %(score)s, %(kind)s, %(comment)s,
        %(metadata)s)
RETURNING id, created_at, request_id, score, kind, comment, metadata;

-- name: request_feedback
SELECT id, created_at, key_prefix, score, kind, comment, metadata
FROM feedback
WHERE tenant_id = %(tenant_id)s AND request_id = %(request_id)s
ORDER BY id;

-- name: stats_summary
SELECT count(*) AS requests,
       count(*) FILTER (WHERE error_type IS NOT NULL) AS errors,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY latency_ms) AS latency_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS latency_p95,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY latency_ms) AS latency_p99,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY ttft_ms) AS ttft_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY ttft_ms) AS ttft_p95,
       percentile_cont(0.99) WITHIN GROUP (ORDER BY ttft_ms) AS ttft_p99,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY overhead_ms) AS overhead_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY overhead_ms) AS overhead_p95,
       count(*) FILTER (WHERE cache_status = 'hit-exact') AS cache_exact_hits,
       count(*) FILTER (WHERE cache_status = 'hit-semantic') AS cache_semantic_hits,
       count(*) FILTER (WHERE cache_status IN ('hit-exact', 'hit-semantic', 'miss',
                                               'verify-agree', 'verify-wrong'))
           AS cache_lookups,
       count(*) FILTER (WHERE cache_status IN ('verify-agree', 'verify-wrong'))
           AS cache_verified,
       count(*) FILTER (WHERE cache_status = 'verify-wrong') AS cache_verified_wrong,
       coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
       coalesce(sum(completion_tokens), 0) AS completion_tokens,
       coalesce(sum(cached_tokens), 0) AS cached_tokens,
       coalesce(sum(cost_usd), 0) AS cost_usd,
       coalesce(sum(cost_saved_usd), 0) AS cost_saved_usd
FROM request_log
WHERE created_at >= %(since)s AND created_at < %(until)s
  AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s)
  AND origin = 'user';

-- name: stats_internal
-- Calls Propylon made for itself (ingestion embeddings, RAG's inner model calls): their own
-- series, never mixed into the user traffic's latency and rates.
SELECT count(*) AS requests,
       count(*) FILTER (WHERE error_type IS NOT NULL) AS errors,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY latency_ms) AS latency_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS latency_p95,
       coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
       coalesce(sum(completion_tokens), 0) AS completion_tokens,
       coalesce(sum(cost_usd), 0) AS cost_usd
FROM request_log
WHERE created_at >= %(since)s AND created_at < %(until)s
  AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s)
  AND origin = 'internal';

-- name: stats_per_minute
-- User traffic and its latency percentiles, with the internal calls of each minute as their
-- own series (never in the percentiles).
SELECT date_trunc('minute', created_at) AS minute,
       count(*) FILTER (WHERE origin = 'user') AS requests,
       count(*) FILTER (WHERE origin = 'user' AND error_type IS NOT NULL) AS errors,
       count(*) FILTER (WHERE origin = 'internal') AS internal_requests,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY latency_ms)
           FILTER (WHERE origin = 'user') AS latency_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
           FILTER (WHERE origin = 'user') AS latency_p95,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY ttft_ms)
           FILTER (WHERE origin = 'user') AS ttft_p95,
       coalesce(sum(cost_saved_usd) FILTER (WHERE origin = 'user'), 0) AS cost_saved_usd
FROM request_log
WHERE created_at >= %(since)s AND created_at < %(until)s
  AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s)
GROUP BY 1
ORDER BY 1;

-- name: stats_groups
-- One scan, three breakdowns: by key, by model, by prompt version (metadata).
SELECT GROUPING(key_prefix) = 0 AS by_key,
       GROUPING(requested_model) = 0 AS by_model,
       GROUPING(prompt_name, prompt_version) = 0 AS by_prompt,
       key_prefix, requested_model, prompt_name, prompt_version,
       count(*) AS requests,
       count(*) FILTER (WHERE error_type IS NOT NULL) AS errors,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY latency_ms) AS latency_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS latency_p95,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY ttft_ms) AS ttft_p50,
       count(*) FILTER (WHERE cache_status IN ('hit-exact', 'hit-semantic')) AS cache_hits,
       count(*) FILTER (WHERE cache_status IN ('hit-exact', 'hit-semantic', 'miss',
                                               'verify-agree', 'verify-wrong'))
           AS cache_lookups,
       coalesce(sum(prompt_tokens), 0) AS prompt_tokens,
       coalesce(sum(completion_tokens), 0) AS completion_tokens,
       coalesce(sum(cost_usd), 0) AS cost_usd,
       coalesce(sum(cost_saved_usd), 0) AS cost_saved_usd
FROM (
    SELECT *, metadata ->> 'prompt_name' AS prompt_name,
           metadata ->> 'prompt_version' AS prompt_version
    FROM request_log
    WHERE created_at >= %(since)s AND created_at < %(until)s
      AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s)
      AND origin = 'user'
) AS r
GROUP BY GROUPING SETS ((key_prefix), (requested_model), (prompt_name, prompt_version))
ORDER BY requests DESC;

-- name: prompt_versions
-- Each version of each prompt (`metadata.prompt_name` / `prompt_version`) over the window:
-- user traffic only; feedback weighted per feedback, not per request. With `step_s`, each
-- version per bucket of that many seconds (its time series); without, the window whole.
SELECT r.metadata ->> 'prompt_name' AS prompt_name,
       r.metadata ->> 'prompt_version' AS prompt_version,
       CASE WHEN %(step_s)s::float8 IS NOT NULL
            THEN date_bin(make_interval(secs => %(step_s)s::float8), r.created_at, %(since)s)
       END AS bucket,
       count(*) AS requests,
       count(*) FILTER (WHERE r.error_type IS NOT NULL) AS errors,
       percentile_cont(0.50) WITHIN GROUP (ORDER BY r.latency_ms) AS latency_p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY r.latency_ms) AS latency_p95,
       avg(r.prompt_tokens) AS prompt_tokens_per_request,
       avg(r.completion_tokens) AS completion_tokens_per_request,
       avg(coalesce(r.cost_usd, 0)) AS cost_usd_per_request,
       count(*) FILTER (WHERE r.cache_status IN ('hit-exact', 'hit-semantic')) AS cache_hits,
       count(*) FILTER (WHERE r.cache_status IN ('hit-exact', 'hit-semantic', 'miss'))
           AS cache_lookups,
       count(*) FILTER (WHERE r.guard ->> 'action' IN ('flag', 'sanitize', 'block'))
           AS guard_flags,
       coalesce(sum(f.n), 0) AS feedback_count,
       sum(f.total) / nullif(sum(f.n), 0) AS feedback_score
FROM request_log r
LEFT JOIN LATERAL (
    SELECT sum(score) AS total, count(*) AS n FROM feedback
    WHERE feedback.tenant_id = r.tenant_id AND feedback.request_id = r.request_id
) AS f ON true
WHERE r.created_at >= %(since)s AND r.created_at < %(until)s
  AND (%(tenant_id)s::text IS NULL OR r.tenant_id = %(tenant_id)s)
  AND r.origin = 'user'
  AND r.metadata ? 'prompt_name'
  AND (%(prompt_name)s::text IS NULL OR r.metadata ->> 'prompt_name' = %(prompt_name)s)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
LIMIT 5000;

-- name: delete_expired_spans
-- Traces follow their tenant's retention: a trace goes with its root's tenant.
DELETE FROM spans
WHERE (trace_id, span_id) IN (
    SELECT s.trace_id, s.span_id FROM spans s
    WHERE s.started_at < now() - make_interval(secs => %(older_than_s)s)
      AND (%(tenant_id)s::text IS NULL
           OR s.trace_id IN (SELECT o.trace_id FROM spans o WHERE o.tenant_id = %(tenant_id)s))
      AND (%(tenant_id)s::text IS NOT NULL
           OR NOT EXISTS (SELECT 1 FROM spans o WHERE o.trace_id = s.trace_id
                          AND o.tenant_id = ANY(%(exempt)s::text[])))
    LIMIT %(limit)s
);

-- name: trace_spans
-- Every span of a trace, if one of its roots is the tenant's (any tenant's for an operator).
SELECT s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.started_at, s.duration_ms,
       s.status, s.status_message, s.attributes, s.events, s.subject
FROM spans s
WHERE s.trace_id = %(trace_id)s
  AND EXISTS (SELECT 1 FROM spans o WHERE o.trace_id = %(trace_id)s
              AND o.tenant_id IS NOT NULL
              AND (%(tenant_id)s::text IS NULL OR o.tenant_id = %(tenant_id)s))
ORDER BY s.started_at, s.span_id;

-- name: find_traces
-- Every span of the traces of a request, run or job (newest trace first, then by time): a
-- trace is found by one of its roots, so it is the tenant's (any tenant's for an operator).
WITH found AS (
    SELECT trace_id, min(started_at) AS first
    FROM spans
    WHERE tenant_id IS NOT NULL AND subject = %(subject)s
      AND (%(tenant_id)s::text IS NULL OR tenant_id = %(tenant_id)s)
    GROUP BY trace_id
    ORDER BY min(started_at) DESC
    LIMIT 20
)
SELECT s.trace_id, s.span_id, s.parent_span_id, s.name, s.kind, s.started_at, s.duration_ms,
       s.status, s.status_message, s.attributes, s.events, s.subject
FROM found f JOIN spans s ON s.trace_id = f.trace_id
ORDER BY f.first DESC, s.trace_id, s.started_at, s.span_id;
