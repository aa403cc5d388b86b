-- Answers over collections: server-side conversations and their turns.

-- One conversation per `conversation_id`, owned by a tenant; `summary` is the compacted text of
-- every turn up to `summary_through` (a turn seq), so older turns are summarised only once.
CREATE TABLE conversations (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id       uuid NOT NULL,
    collection_id   uuid REFERENCES collections (id) ON DELETE SET NULL,
    summary         text,
    summary_through integer NOT NULL DEFAULT 0,
    summary_kind    text,                          -- 'model' or 'truncated'
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversations_tenant ON conversations (tenant_id, updated_at);

-- The turns, verbatim, in order: a user question then the assistant's answer.
CREATE TABLE conversation_turns (
    conversation_id uuid NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             integer NOT NULL,
    role            text NOT NULL CHECK (role IN ('user', 'assistant')),
    content         text NOT NULL,
    citations       jsonb NOT NULL DEFAULT '[]',
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (conversation_id, seq)
);
