-- The request explorer (issue 23):
-- response_id: the id the client saw (`chatcmpl-…`), so feedback can name the answer;
-- headers: the response headers that told the client its route (x-propylon-*, rate limits,
-- guard);
-- feedback: scores and comments clients post about a request (`POST /v1/feedback`), joined to
-- the log by (tenant_id, request_id) when read: feedback never waits for the log's writer.
ALTER TABLE request_log
    ADD COLUMN IF NOT EXISTS response_id text,
    ADD COLUMN IF NOT EXISTS headers jsonb;

CREATE INDEX IF NOT EXISTS request_log_response_id ON request_log (response_id)
    WHERE response_id IS NOT NULL;
-- The explorer's first page and paging: newest first by id within a tenant.
CREATE INDEX IF NOT EXISTS request_log_tenant_id_desc ON request_log (tenant_id, id DESC);
-- `status=error`: errors are rare, so a filter on them would otherwise walk the whole window.
CREATE INDEX IF NOT EXISTS request_log_tenant_errors ON request_log (tenant_id, id DESC)
    WHERE error_type IS NOT NULL;
CREATE INDEX IF NOT EXISTS request_log_parent ON request_log (parent_id)
    WHERE parent_id IS NOT NULL;
-- Free text over prompts and answers (`q=`): built-in full text search, no extension.
CREATE INDEX IF NOT EXISTS request_log_text ON request_log USING gin (
    to_tsvector('simple', coalesce(prompt, '') || ' ' || coalesce(response, ''))
);

CREATE TABLE IF NOT EXISTS feedback (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at  timestamptz NOT NULL DEFAULT now(),
    tenant_id   text NOT NULL,
    request_id  text NOT NULL,
    key_prefix  text,
    score       double precision NOT NULL,     -- thumbs: up 1, down 0
    kind        text NOT NULL,                 -- number | thumbs
    comment     text,
    metadata    jsonb
);
CREATE INDEX IF NOT EXISTS feedback_tenant_request ON feedback (tenant_id, request_id);
