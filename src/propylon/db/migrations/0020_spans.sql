-- Traces (issue 23): the OpenTelemetry spans the console draws as a waterfall, written in
-- batches off the request path by observe/span_store.py and deleted with the request log.
-- A trace belongs to the tenant named on its root span(s) (`tenant_id`, with `subject`: the
-- request, run or job it traces, e.g. `request:req-…`, `run:run_…`, `job:42`); its other
-- spans carry neither and are read through their trace.
CREATE TABLE IF NOT EXISTS spans (
    trace_id        text NOT NULL,               -- 32 hex digits
    span_id         text NOT NULL,               -- 16 hex digits
    parent_span_id  text,                        -- NULL: a root
    tenant_id       text,
    subject         text,
    name            text NOT NULL,
    kind            text NOT NULL,               -- internal | server | client | …
    started_at      timestamptz NOT NULL,
    duration_ms     double precision NOT NULL,
    status          text NOT NULL,               -- unset | ok | error
    status_message  text,
    attributes      jsonb NOT NULL DEFAULT '{}',
    events          jsonb,                       -- [{"name", "at_ms", "attributes"}]
    PRIMARY KEY (trace_id, span_id)
);
CREATE INDEX IF NOT EXISTS spans_tenant_subject ON spans (tenant_id, subject, started_at DESC)
    WHERE tenant_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS spans_started ON spans (started_at);

-- The explorer at 10 million rows: a filter on the cache status or the guard's action that
-- matches few rows (or none) in the window would otherwise walk the whole window newest
-- first; with these the two filters meet in a bitmap of the window's matches.
CREATE INDEX IF NOT EXISTS request_log_tenant_cache ON request_log
    (tenant_id, cache_status, created_at);
CREATE INDEX IF NOT EXISTS request_log_tenant_guard ON request_log
    (tenant_id, (guard ->> 'action'), created_at);
-- The planner takes filters as independent: for a combination that (nearly) never occurs it
-- expected thousands of matches, so it walked the newest-first index through all 10 million
-- rows to find 50 (17 s). These statistics tell it which values go together.
CREATE STATISTICS IF NOT EXISTS request_log_filters (mcv, dependencies)
    ON tenant_id, cache_status, (guard ->> 'action'), requested_model FROM request_log;
