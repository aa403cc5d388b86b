-- Stored Responses API responses (`store: true`, the default): the response as returned, and
-- the chat turns of its conversation so far (input and output, without `instructions`), so a
-- request naming it as `previous_response_id` continues the conversation without resending it.
CREATE TABLE responses (
    id           text PRIMARY KEY,
    tenant_id    uuid NOT NULL,
    response     jsonb NOT NULL,
    conversation jsonb NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX responses_tenant_created ON responses (tenant_id, created_at DESC);
