-- Tenants, API keys (stored only as SHA-256 hashes) and the usage each key spends.

CREATE TABLE IF NOT EXISTS tenants (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name       text NOT NULL UNIQUE,
    limits     jsonb NOT NULL DEFAULT '{}',   -- {"rpm": int, "tpm": int}
    budget     jsonb NOT NULL DEFAULT '{}',   -- {"period": "day"|"month", "tokens": int, "cost_usd": num}
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS api_keys (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id  uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    name       text NOT NULL DEFAULT '',
    prefix     text NOT NULL,                 -- the first characters, for display only
    key_hash   bytea NOT NULL UNIQUE,         -- sha256 of the whole key; the key itself is never stored
    models     text[],                        -- allowed public model names; NULL: any
    features   text[] NOT NULL,
    limits     jsonb NOT NULL DEFAULT '{}',
    budget     jsonb NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz
);
CREATE INDEX IF NOT EXISTS api_keys_tenant ON api_keys (tenant_id);

-- One row per key and UTC day; budgets sum the rows of their period.
CREATE TABLE IF NOT EXISTS key_usage (
    key_id            uuid NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    tenant_id         uuid NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    day               date NOT NULL,
    requests          bigint NOT NULL DEFAULT 0,
    prompt_tokens     bigint NOT NULL DEFAULT 0,
    completion_tokens bigint NOT NULL DEFAULT 0,
    cost_usd          numeric(20, 8) NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day)
);
CREATE INDEX IF NOT EXISTS key_usage_tenant_day ON key_usage (tenant_id, day);
