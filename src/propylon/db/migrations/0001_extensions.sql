-- pgvector for embeddings (context engine, semantic cache).
CREATE EXTENSION IF NOT EXISTS vector;

-- Facts about this installation (created_at, version stamps of bundled models, …).
CREATE TABLE IF NOT EXISTS propylon_meta (
    key        text PRIMARY KEY,
    value      jsonb NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO propylon_meta (key, value)
VALUES ('installed_at', to_jsonb(now()))
ON CONFLICT (key) DO NOTHING;
