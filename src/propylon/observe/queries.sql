-- The named SQL of the observe part (request log), read once by queries.py.

-- name: delete_expired
-- One bounded slice per statement, so retention never holds long locks.
DELETE FROM request_log
WHERE id IN (
    SELECT id FROM request_log
    WHERE created_at < now() - make_interval(secs => %(older_than_s)s)
    LIMIT %(limit)s
);

-- name: list_logs
SELECT id, created_at, request_id, tenant_id, key_prefix, endpoint, stream, requested_model,
       deployment, attempts, attempt_count, status, error_type, error_code, content_policy,
       prompt, response, prompt_tokens, completion_tokens, cached_tokens, cost_usd, latency_ms,
       ttft_ms, overhead_ms, upstream_ms, cache_status, cache_similarity, guard, metadata,
       cost_saved_usd, origin, parent_id, usage_estimated
FROM request_log
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
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s;

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
-- User traffic, with the internal calls of each minute as their own series.
SELECT date_trunc('minute', created_at) AS minute,
       count(*) FILTER (WHERE origin = 'user') AS requests,
       count(*) FILTER (WHERE origin = 'user' AND error_type IS NOT NULL) AS errors,
       count(*) FILTER (WHERE origin = 'internal') AS internal_requests
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
