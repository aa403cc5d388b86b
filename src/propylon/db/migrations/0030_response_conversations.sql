-- OpenAI's Conversations API (`/v1/conversations`, and `conversation` on `/v1/responses`):
-- a tenant's conversations and their items in the Responses item format, in order.
CREATE TABLE response_conversations (
    id          text PRIMARY KEY,                 -- conv_…
    tenant_id   uuid NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX response_conversations_tenant ON response_conversations (tenant_id, created_at);

CREATE TABLE response_conversation_items (
    conversation_id text NOT NULL REFERENCES response_conversations (id) ON DELETE CASCADE,
    seq             bigserial,
    id              text NOT NULL,                -- msg_…, fc_…, fco_…
    item            jsonb NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (conversation_id, id)
);
